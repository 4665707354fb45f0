// smithers: run, inspect and check durable workflows (docs/cli.md).
#include "cli.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iostream>

namespace smithers::cli {

int exit_code_for(const error& e) {
  return traits_of(e.code).exit_code;
}

int exit_code_for(run_status s) {
  switch (s) {
  case run_status::finished:
    return exit_finished;
  case run_status::cancelled:
    return exit_cancelled;
  case run_status::waiting_approval:
  case run_status::waiting_event:
  case run_status::waiting_timer:
    return exit_waiting;
  default:
    return exit_failed;
  }
}

std::optional<error> check_db_path(const std::string& path) {
  // Each connection to "" or ":memory:" gets a database of its own that
  // vanishes with it: a run would be recorded nowhere that ps, inspect,
  // cancel or resume could find it.
  auto memory = [&] {
    if (path == ":memory:" || path.rfind("file::memory:", 0) == 0) return true;
    return path.rfind("file:", 0) == 0 && path.find("mode=memory") != std::string::npos;
  };
  if (path.empty())
    return error{errc::invalid_argument,
                 "--db is empty: give the path of a database file (default ./smithers.db)"};
  if (memory())
    return error{errc::invalid_argument,
                 "--db " + shown(path) +
                     " is an in-memory database, which no other command could read: give the "
                     "path of a database file"};
  // One spelling for one file: SQLite would take "x.db/" or "file:x.db" one
  // way and a reader another.
  if (path.rfind("file:", 0) == 0)
    return error{errc::invalid_argument,
                 "--db " + shown(path) + ": give a plain file path, not a file: URI"};
  std::error_code ec;
  if (path.back() == '/' || std::filesystem::is_directory(path, ec))
    return error{errc::invalid_argument,
                 "--db " + shown(path) + " is a directory: give the path of a database file"};
  return std::nullopt;
}

void print_error(const globals& g, const error& e) {
  if (g.json()) {
    std::cout << dump(json{{"error", e.to_json()}}) << std::endl;
    return;
  }
  std::cerr << "error: " << e.code << ": " << shown(e.message) << "\n";
  if (auto it = e.details.find("problems");
      it != e.details.end() && it->is_array() && it->size() > 1) {
    for (const auto& p : *it)
      std::cerr << "  " << shown(p.value("path", "")) << ": " << shown(p.value("message", ""))
                << "\n";
  }
}

std::chrono::milliseconds parse_duration(const std::string& text, const char* option) {
  std::size_t end = 0;
  long long n = -1;
  try {
    n = std::stoll(text, &end);
  } catch (...) {
  }
  std::string unit = text.substr(end);
  long long factor = unit.empty() || unit == "ms" ? 1
                     : unit == "s"                ? 1000
                     : unit == "m"                ? 60000
                     : unit == "h"                ? 3600000
                                                  : -1;
  // Bounded so that n * factor cannot overflow (a year is plenty).
  constexpr long long max_ms = 366LL * 24 * 3600000;
  if (n <= 0 || factor < 0 || n > max_ms / factor)
    throw smithers_error(errc::invalid_argument,
                         std::string{option} +
                             " must be a positive duration like 30s, 500ms or 2m (at most a "
                             "year), got \"" +
                             shown(text) + "\"");
  return std::chrono::milliseconds{n * factor};
}

std::int64_t parse_integer(const std::string& text, const char* option, std::int64_t min,
                           std::int64_t max) {
  // Decimal digits only: no sign games, no hex, no empty string as 0.
  bool digits = !text.empty() && text.size() <= 19 &&
                text.find_first_not_of("0123456789") == std::string::npos;
  std::int64_t v = digits ? std::stoll(text) : -1;
  if (!digits || v < min || v > max)
    throw smithers_error(errc::invalid_argument,
                         std::string{option} + " must be an integer from " + std::to_string(min) +
                             " to " + std::to_string(max) + ", got \"" + shown(text) + "\"");
  return v;
}

std::string format_time(std::int64_t ms) {
  if (ms <= 0) return "-";
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03d", buf, static_cast<int>(ms % 1000));
  return out;
}

std::string format_duration(std::int64_t ms) {
  if (ms < 0) return "-";
  if (ms < 1000) return std::to_string(ms) + " ms";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f s", static_cast<double>(ms) / 1000.0);
  return buf;
}

} // namespace smithers::cli

namespace {

int run_cli(int argc, char** argv) {
  using namespace smithers;
  using namespace smithers::cli;
  CLI::App app{"smithers: durable workflows on actors", "smithers"};
  app.set_version_flag("--version", "smithers 0.1.0");
  app.require_subcommand(1);
  app.fallthrough();
  globals g;
  if (const char* env = std::getenv("SMITHERS_DB"); env && *env) g.db = env;
  app.add_option("--db", g.db, "SQLite database file (default ./smithers.db or $SMITHERS_DB)");
  app.add_option("--format", g.format, "output format")->check(CLI::IsMember({"text", "json"}));
  app.add_option("--log-level", g.log_level, "trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));

  int result = exit_finished;
  add_run_command(app, g, result);
  add_query_commands(app, g, result);
  add_workflow_commands(app, g, result);
  add_supervise_command(app, g, result);
  add_wait_commands(app, g, result);
  add_worker_command(app, g, result);
  add_cache_command(app, g, result);
  add_serve_command(app, g, result);
  for (const char* name : {"run", "resume", "fork", "supervise"})
    add_worker_options(app.get_subcommand(name), g);

  auto logger = spdlog::stderr_color_mt("smithers");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::warn);
  app.parse_complete_callback([&] {
    spdlog::set_level(spdlog::level::from_str(g.log_level));
    // Runs before the command's own callback: nothing has run yet.
    bool uses_db = true;
    for (const auto* sub : app.get_subcommands())
      uses_db = uses_db && sub->get_name() != "validate" && sub->get_name() != "graph";
    if (uses_db)
      if (auto err = check_db_path(g.db)) throw smithers_error(*err);
  });

  // CLI11 only says "a subcommand is required" for `smithers frobnicate`:
  // name the word it did not know.
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--format" && i + 1 < argc)
      g.format = argv[i + 1]; // so the error below comes in the asked-for format
    if (a.rfind("--format=", 0) == 0) g.format = a.substr(9);
    if (a == "--db" || a == "--format" || a == "--log-level") {
      ++i;
      continue;
    }
    if (!a.empty() && a[0] == '-') continue;
    bool known = false;
    for (const auto* sub : app.get_subcommands({}))
      known = known || sub->get_name() == a;
    if (!known) {
      print_error(
          g, error{errc::invalid_argument, "unknown command \"" + a + "\" (see smithers --help)"});
      return exit_invalid;
    }
    break;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    print_error(g, error{errc::invalid_argument, e.what()});
    return exit_invalid;
  } catch (const smithers_error& e) {
    print_error(g, e.err());
    return exit_code_for(e.err());
  } catch (const std::exception& e) {
    print_error(g, error{errc::internal, e.what()});
    return exit_failed;
  }
  return result;
}

} // namespace

int main(int argc, char** argv) {
  int code = run_cli(argc, argv);
  // Output that could not be written (a closed or full stdout) is a failure,
  // not a silent loss.
  std::cout.flush();
  if (!std::cout) {
    std::cerr << "error: cannot write to standard output (closed or full); what was to be "
                 "printed is lost\n";
    if (code == smithers::cli::exit_finished) code = smithers::cli::exit_failed;
  }
  return code;
}
