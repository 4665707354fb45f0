// Errors: one type everywhere, carrying a stable code (docs/reference.md#error-codes), a message
// and details. Errors cross actor boundaries as data, never as exceptions.
#pragma once

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>

namespace smithers {

using json = nlohmann::json;

/// Stable error codes (docs/reference.md#error-codes). Strings, so they survive JSON and the CLI.
namespace errc {
inline constexpr const char* invalid_input = "INVALID_INPUT";
inline constexpr const char* invalid_run_id = "INVALID_RUN_ID";
inline constexpr const char* invalid_argument = "INVALID_ARGUMENT";
inline constexpr const char* invalid_workflow = "INVALID_WORKFLOW";
inline constexpr const char* invalid_output = "INVALID_OUTPUT";
inline constexpr const char* task_failed = "TASK_FAILED";
inline constexpr const char* task_timeout = "TASK_TIMEOUT";
inline constexpr const char* task_heartbeat_timeout = "TASK_HEARTBEAT_TIMEOUT";
inline constexpr const char* task_aborted = "TASK_ABORTED";
inline constexpr const char* heartbeat_payload_too_large = "HEARTBEAT_PAYLOAD_TOO_LARGE";
inline constexpr const char* heartbeat_payload_not_json = "HEARTBEAT_PAYLOAD_NOT_JSON_SERIALIZABLE";
inline constexpr const char* template_missing_value = "TEMPLATE_MISSING_VALUE";
inline constexpr const char* run_not_found = "RUN_NOT_FOUND";
inline constexpr const char* run_not_resumable = "RUN_NOT_RESUMABLE";
inline constexpr const char* run_owner_alive = "RUN_OWNER_ALIVE";
inline constexpr const char* run_still_running = "RUN_STILL_RUNNING";
inline constexpr const char* run_resume_claim_failed = "RUN_RESUME_CLAIM_FAILED";
inline constexpr const char* resume_metadata_mismatch = "RESUME_METADATA_MISMATCH";
inline constexpr const char* run_cancelled = "RUN_CANCELLED";
inline constexpr const char* loop_max_reached = "LOOP_MAX_REACHED";
inline constexpr const char* continuation_state_too_large = "CONTINUATION_STATE_TOO_LARGE";
inline constexpr const char* approval_denied = "APPROVAL_DENIED";
inline constexpr const char* signal_timeout = "SIGNAL_TIMEOUT";
inline constexpr const char* worker_lost = "WORKER_LOST";
inline constexpr const char* worker_unavailable = "WORKER_UNAVAILABLE";
inline constexpr const char* unauthorized = "UNAUTHORIZED";
// smithers serve's refusals (docs/operations.md, "Serving").
inline constexpr const char* forbidden = "FORBIDDEN";
inline constexpr const char* not_found = "NOT_FOUND";
inline constexpr const char* method_not_allowed = "METHOD_NOT_ALLOWED";
inline constexpr const char* server_busy = "SERVER_BUSY";
inline constexpr const char* agent_auth_failed = "AGENT_AUTH_FAILED";
inline constexpr const char* worktree_create_failed = "WORKTREE_CREATE_FAILED";
inline constexpr const char* db_error = "DB_ERROR";
inline constexpr const char* internal = "INTERNAL"; // a bug: an exception where none was expected
} // namespace errc

/// What each code means to the engine and the command line, in one place:
/// whether an attempt that fails with it is retried (while it has retries
/// left), and the exit code of a `smithers` command that fails with it
/// (4: refused, nothing written; 2: cancelled; 1: anything else).
struct code_traits {
  const char* code;
  bool retryable;
  int exit_code;
};

inline constexpr code_traits error_codes[] = {
    // Bad input: refused before anything is written, or an attempt that
    // would fail the same way again.
    {errc::invalid_input, false, 4},
    {errc::invalid_run_id, false, 4},
    {errc::invalid_argument, false, 4},
    {errc::invalid_workflow, false, 4},
    {errc::invalid_output, false, 1},
    {errc::template_missing_value, false, 1},
    {errc::heartbeat_payload_too_large, false, 1},
    {errc::heartbeat_payload_not_json, false, 1},
    // What an attempt may hit once and not the next time.
    {errc::task_failed, true, 1},
    {errc::task_timeout, true, 1},
    {errc::task_heartbeat_timeout, true, 1},
    {errc::task_aborted, true, 1},
    {errc::signal_timeout, true, 1},
    {errc::worker_lost, true, 1},
    {errc::worker_unavailable, true, 1},
    // Refused operations on stored runs (nothing written).
    {errc::run_not_found, false, 4},
    {errc::run_not_resumable, false, 4},
    {errc::run_owner_alive, false, 4},
    {errc::run_still_running, false, 4},
    {errc::run_resume_claim_failed, false, 4},
    {errc::resume_metadata_mismatch, false, 4},
    {errc::unauthorized, false, 4},
    {errc::forbidden, false, 4},
    {errc::not_found, false, 4},
    {errc::method_not_allowed, false, 4},
    {errc::server_busy, true, 1},
    // Ends of runs, and failures of the engine itself.
    {errc::run_cancelled, false, 2},
    {errc::loop_max_reached, false, 1},
    {errc::continuation_state_too_large, false, 1},
    {errc::approval_denied, false, 1},
    // An agent whose credentials failed: the run core moves the chain on
    // (docs/agents.md) instead of asking it again.
    {errc::agent_auth_failed, false, 1},
    {errc::worktree_create_failed, false, 1},
    {errc::db_error, false, 1},
    {errc::internal, false, 1},
};

/// The traits of `code`; a code of the host's own (a compute function's
/// smithers_error) is retryable and exits 1.
inline code_traits traits_of(const std::string& code) {
  for (const auto& t : error_codes)
    if (code == t.code) return t;
  return {nullptr, true, 1};
}

/// An error as data: recorded on attempts and runs, printed by the CLI.
struct error {
  std::string code;
  std::string message;
  json details = json::object();

  json to_json() const {
    json j = {{"code", code}, {"message", message}};
    if (!details.empty()) j["details"] = details;
    return j;
  }

  static error from_json(const json& j) {
    error e;
    e.code = j.value("code", std::string{errc::task_failed});
    e.message = j.value("message", std::string{});
    if (auto it = j.find("details"); it != j.end()) e.details = *it;
    return e;
  }

  /// "CODE: message"
  std::string what() const { return code + ": " + message; }
};

/// The exception the public API throws; carries the same error data.
class smithers_error : public std::runtime_error {
public:
  explicit smithers_error(error e) : std::runtime_error(e.what()), err_(std::move(e)) {}
  smithers_error(std::string code, std::string message, json details = json::object())
      : smithers_error(error{std::move(code), std::move(message), std::move(details)}) {}

  const error& err() const noexcept { return err_; }
  const std::string& code() const noexcept { return err_.code; }

private:
  error err_;
};

} // namespace smithers
