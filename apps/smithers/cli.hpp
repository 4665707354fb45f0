// Shared pieces of the smithers command line: global options, exit codes,
// output helpers. Each command group lives in its own cmd_*.cpp.
#pragma once

#include "format/parse.hpp"
#include "util/term_text.hpp"

#include <smithers/errors.hpp>
#include <smithers/status.hpp>
#include <smithers/task.hpp>

#include <CLI/CLI.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace smithers {
class engine;
}

namespace smithers::cli {

/// Exit codes of docs/cli.md.
enum exit_code : int {
  exit_finished = 0,
  exit_failed = 1,
  exit_cancelled = 2,
  exit_waiting = 3,
  exit_invalid = 4,
};

struct globals {
  std::string db = "smithers.db";
  std::string format = "text"; // text | json
  std::string log_level = "warn";
  // Commands that drive runs (run, resume, fork --run, supervise): where
  // their attempts run (add_worker_options).
  std::vector<std::string> workers;
  bool local_fallback = false;
  std::string tls_cert, tls_key, tls_ca;
  bool json() const { return format == "json"; }
};

/// --workers, --local-fallback and the TLS options, on a command that drives runs.
void add_worker_options(CLI::App* cmd, globals& g);
/// INVALID_ARGUMENT for worker options that cannot work (a bad address, TLS
/// files that do not fit, --local-fallback alone): called before anything
/// is written.
void check_worker_options(const globals& g);
/// `smithers cache clear`.
void add_cache_command(CLI::App& app, const globals& g, int& result);
/// `smithers serve`: the runs over HTTP.
void add_serve_command(CLI::App& app, const globals& g, int& result);
/// `smithers worker`: serve tasks for owners elsewhere.
void add_worker_command(CLI::App& app, const globals& g, int& result);

/// Exit code for an error: 4 for bad arguments, input or workflow (nothing
/// was written), 1 otherwise.
int exit_code_for(const error& e);
int exit_code_for(run_status s);

/// INVALID_ARGUMENT for a --db the CLI cannot use: empty, or an in-memory
/// database (":memory:", "file::memory:", "file:...?mode=memory"), which
/// would hold a run where no other command could find it.
std::optional<error> check_db_path(const std::string& path);

/// Prints an error as the chosen format: text to stderr, JSON to stdout.
void print_error(const globals& g, const error& e);

/// JSON text for output: bytes that are not UTF-8 (in a message quoting
/// user input, say) become U+FFFD instead of throwing.
inline std::string dump(const json& j, int indent = -1) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

/// Text from a run (a name, a label, a message, a dumped value) as it may be
/// printed in text mode: control characters escaped (util::term_text).
inline std::string shown(std::string_view s) {
  return util::term_text(s);
}
inline std::string shown_json(const json& j) {
  return util::term_text(dump(j));
}

/// "30s", "500ms", "2m", "1h" or plain milliseconds; INVALID_ARGUMENT
/// naming `option` otherwise.
std::chrono::milliseconds parse_duration(const std::string& text, const char* option);

/// A decimal integer from `min` to `max` given to `option`; INVALID_ARGUMENT
/// naming the option and the range otherwise (an empty string, a sign, hex).
std::int64_t parse_integer(const std::string& text, const char* option, std::int64_t min,
                           std::int64_t max);

/// "2026-11-21 06:07:00.123" in UTC, or "-" for 0.
std::string format_time(std::int64_t ms);
/// "1.25 s", "350 ms", "-".
std::string format_duration(std::int64_t ms);

// Command groups register their subcommands; the callbacks store the exit
// code in `result`.
void add_run_command(CLI::App& app, const globals& g, int& result);
void add_query_commands(CLI::App& app, const globals& g, int& result);
void add_workflow_commands(CLI::App& app, const globals& g, int& result);
void add_supervise_command(CLI::App& app, const globals& g, int& result);
void add_wait_commands(CLI::App& app, const globals& g, int& result);

/// `text` as one shell word (quoted unless it is plainly safe).
std::string shell_word(const std::string& text);
/// "smithers" plus --db when it is not the default: the start of a command
/// a user can paste.
std::string smithers_command(const globals& g);
/// For each entry of inspect's "waiting": the commands that would continue
/// the run ({"approve", "deny"} or {"signal"}), plus "resume".
json continue_commands(const globals& g, const std::string& run_id, const json& waiting);

/// The git revision (HEAD) of the directory holding `file`, or "" when it is
/// not in a git work tree.
std::string git_revision(const std::string& file);

/// Compute functions the CLI registers for JSON workflows (and `smithers
/// worker` serves): "noop" returns {}, "echo" returns {"node_id", "input",
/// "needs"}.
template <class Host> void register_builtin_computes(Host& h) {
  h.register_compute("noop", [](task_context&) { return json::object(); });
  h.register_compute("echo", [](task_context& ctx) {
    return json{{"node_id", ctx.node_id()}, {"input", ctx.input()}, {"needs", ctx.needs()}};
  });
}
bool is_builtin_compute(const std::string& name);
/// The compute names a run may use: the built-ins, or with --workers any
/// (a worker may serve it).
std::function<bool(const std::string&)> compute_check(const globals& g);

/// Loads and validates a workflow file: INVALID_ARGUMENT for a path over the
/// limit, INVALID_WORKFLOW with every problem (details.problems) otherwise.
spec::parse_result load_workflow_or_throw(const std::string& path);

/// Reads --input (or `option`, e.g. --data): inline JSON, @file, or - for
/// stdin. INVALID_INPUT when it is not JSON.
json read_input(const std::string& arg, const char* option = "--input");

} // namespace smithers::cli
