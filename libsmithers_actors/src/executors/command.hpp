// The command-task protocol of docs/workflow-format.md, on top of util::run_subprocess:
// stdin context, SMITHERS_* environment, heartbeat lines, output extraction.
#pragma once

#include "util/subprocess.hpp"
#include <smithers/errors.hpp>

#include <functional>
#include <optional>
#include <string_view>
#include <variant>

namespace smithers::executors {

/// A "::heartbeat" or "::heartbeat <json>" line. Returns nullopt for other
/// lines; for heartbeat lines, the data (null when none). Throws
/// smithers_error(HEARTBEAT_PAYLOAD_NOT_JSON_SERIALIZABLE) for bad JSON after
/// the marker.
std::optional<json> parse_heartbeat_line(std::string_view line);

struct extracted_output {
  std::optional<json> output;   // the output object, if one was found
  std::optional<error> refused; // INVALID_OUTPUT: the candidate is JSON the engine refuses
};

/// The output object in a command's stdout (heartbeat lines already removed):
/// the whole text if it is one JSON object, else the last fenced ```json
/// block holding an object, else the last balanced {...} that parses. Parsed
/// with util::parse_json: a candidate nested deeper than
/// limits::max_output_depth, with a duplicate key or a number out of range is
/// refused (INVALID_OUTPUT naming its path) and ends the search — an object
/// inside it is never taken for the output instead.
extracted_output find_output(std::string_view text);

/// find_output's object, or nullopt (none found, or refused).
std::optional<json> extract_output(std::string_view text);

struct command_spec {
  std::vector<std::string> argv; // already expanded; for shell tasks {"/bin/sh", "-c", cmd}
  std::map<std::string, std::string> env; // already expanded task env
  std::string cwd;
  // stdin context
  std::string run_id;
  std::string node_id;
  std::int64_t iteration = 0;
  std::int64_t attempt = 1;
  json input = json::object();
  json needs = json::object();
  json last_heartbeat; // null when none
  std::shared_ptr<std::atomic<bool>> cancel;
  std::optional<std::chrono::milliseconds> timeout;
  std::chrono::milliseconds kill_grace{2000};
  std::function<void(std::int64_t pid)> on_start; // the process group started
  /// Stdout beyond this stops the command: INVALID_OUTPUT. 0: unbounded.
  std::size_t max_stdout_bytes = 0;
  /// What stdin receives; nullopt: the context object above (an agent
  /// gets its prompt instead).
  std::optional<std::string> stdin_data;
  /// Names the process in messages ("command", "agent \"claude\"").
  std::string what = "command";
  /// Find the output object in stdout (else the caller does, from `out`).
  bool find_output = true;
  /// Every line printed, as it arrives (heartbeat markers included).
  std::function<void(const std::string& line, bool is_stderr)> on_output;
};

/// A heartbeat seen in the output: `data` is null for plain output lines and
/// bare "::heartbeat" markers.
using heartbeat_sink = std::function<void(const json& data, bool has_data)>;

struct command_outcome {
  std::optional<json> output;   // set on success (with find_output)
  std::optional<error> failure; // set on failure
  bool cancelled = false;
  bool timed_out = false;
  std::string out; // stdout, heartbeat lines left out
  std::string err; // stderr (its last 64 KiB)
};

/// The last `n` lines of `text` (heartbeat lines skipped), at most 8 KiB,
/// as valid UTF-8: what error details carry of a process's output.
std::string last_lines(std::string_view text, std::size_t n = 20);

/// `s` with every byte that is not part of valid UTF-8 replaced by U+FFFD.
std::string valid_utf8(std::string_view s);

/// Runs the command to its end. Success = exit 0 and an output object found.
/// Failures: TASK_FAILED with exit code and the last lines of stderr in
/// details ({"exit_code", "signal", "stderr_tail"}), or when no output object
/// is found; TASK_TIMEOUT when the timeout ended it; TASK_ABORTED when cancel
/// ended it; heartbeat payload errors with their own codes. Does not validate
/// the output against a schema (the caller does).
command_outcome run_command(const command_spec& spec, const heartbeat_sink& on_heartbeat);

} // namespace smithers::executors
