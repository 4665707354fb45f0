// Errors: one type everywhere, carrying a stable code (SPEC §7), a message
// and details. Errors cross actor boundaries as data, never as exceptions.
#pragma once

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>

namespace smithers {

using json = nlohmann::json;

/// Stable error codes (SPEC §7). Strings, so they survive JSON and the CLI.
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
inline constexpr const char* worker_lost = "WORKER_LOST";
inline constexpr const char* db_error = "DB_ERROR";
inline constexpr const char* internal = "INTERNAL"; // a bug: an exception where none was expected
} // namespace errc

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
