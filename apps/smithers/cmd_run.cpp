// smithers run: start a run and drive it to its end, with live progress on a
// terminal.
#include "cli.hpp"
#include "signals.hpp"

#include "format/parse.hpp"
#include "util/ids.hpp"
#include "util/json_parse.hpp"
#include "util/read_file.hpp"
#include "util/subprocess.hpp"

#include <smithers/admin.hpp>
#include <smithers/engine.hpp>
#include <smithers/limits.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <pthread.h>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace smithers::cli {

void register_builtin_computes(engine& e) {
  e.register_compute("noop", [](task_context&) { return json::object(); });
  e.register_compute("echo", [](task_context& ctx) {
    return json{{"node_id", ctx.node_id()}, {"input", ctx.input()}, {"needs", ctx.needs()}};
  });
}

std::string git_revision(const std::string& file) {
  auto slash = file.rfind('/');
  std::string dir = slash == std::string::npos ? "." : file.substr(0, slash + 1);
  util::subprocess_request req;
  req.argv = {"git", "-C", dir, "rev-parse", "HEAD"};
  req.timeout = std::chrono::milliseconds{5000};
  auto res = util::run_subprocess(req);
  if (!res.exited || res.exit_code != 0) return "";
  auto rev = res.out;
  while (!rev.empty() && (rev.back() == '\n' || rev.back() == '\r'))
    rev.pop_back();
  return rev;
}

bool is_builtin_compute(const std::string& name) {
  return name == "noop" || name == "echo";
}

namespace {

// Text of an input beyond this is refused unread: its serialized size is
// checked against limits::max_input_bytes once parsed, and whitespace may
// make the text larger than that.
constexpr std::size_t max_input_text_bytes = 4 * limits::max_input_bytes;

// At most max_input_text_bytes + 1 bytes: enough to know it is too large.
std::string read_capped(std::istream& in) {
  std::string text(max_input_text_bytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return text;
}

} // namespace

json read_input(const std::string& arg) {
  std::string text;
  std::string where = "--input";
  if (arg == "-") {
    text = read_capped(std::cin);
    where = "stdin";
  } else if (!arg.empty() && arg[0] == '@') {
    std::string file = arg.substr(1);
    auto read = util::read_regular_file(file, max_input_text_bytes);
    if (read.too_large)
      throw smithers_error(errc::invalid_input,
                           "input file \"" + file + "\" is larger than the limit of " +
                               std::to_string(max_input_text_bytes) + " bytes");
    if (!read.error.empty())
      throw smithers_error(errc::invalid_input,
                           "cannot read input file \"" + file + "\": " + read.error);
    text = std::move(read.text);
    where = file;
  } else {
    text = arg;
  }
  if (text.size() > max_input_text_bytes)
    throw smithers_error(errc::invalid_input, "input from " + where +
                                                  " is larger than the limit of " +
                                                  std::to_string(max_input_text_bytes) + " bytes");
  util::json_parse_error err;
  auto j = util::parse_json(text, {limits::max_input_depth, max_input_text_bytes}, &err);
  if (!j) {
    error e = util::to_error(err, errc::invalid_input, "input from " + where);
    if (err.what == util::json_problem::syntax)
      e.message = "input from " + where + " is not valid JSON: " + err.message;
    throw smithers_error(std::move(e));
  }
  return std::move(*j);
}

namespace {

/// Live counts on a terminal, redrawn at most every 100 ms.
class progress {
public:
  explicit progress(bool enabled) : enabled_(enabled) {}

  void on_event(const event& e) {
    std::lock_guard<std::mutex> lk(mtx_);
    const auto& t = e.type;
    if (t == event_type::node_pending) {
      ++pending_;
    } else if (t == event_type::node_started) {
      --pending_;
      ++running_;
    } else if (t == event_type::node_finished) {
      --running_;
      ++finished_;
    } else if (t == event_type::node_failed) {
      --running_;
      ++failed_;
    } else if (t == event_type::node_retrying) {
      --running_;
      ++pending_;
    } else if (t == event_type::node_skipped) {
      --pending_;
      ++skipped_;
    }
    auto now = std::chrono::steady_clock::now();
    if (enabled_ && now - last_draw_ > std::chrono::milliseconds(100)) {
      last_draw_ = now;
      draw();
    }
  }

  void done() {
    std::lock_guard<std::mutex> lk(mtx_);
    if (enabled_) {
      draw();
      std::cerr << "\n";
    }
  }

private:
  void draw() {
    std::cerr << "\r\033[K" << finished_ << " finished, " << running_ << " running, " << pending_
              << " pending, " << failed_ << " failed";
    if (skipped_) std::cerr << ", " << skipped_ << " skipped";
    std::cerr << std::flush;
  }

  bool enabled_;
  std::mutex mtx_;
  long pending_ = 0, running_ = 0, finished_ = 0, failed_ = 0, skipped_ = 0;
  std::chrono::steady_clock::time_point last_draw_{};
};

} // namespace

json inspect_json(const std::string& db_path, const std::string& run_id);

namespace {

void print_result(const globals& g, const run_result& res) {
  if (g.json()) {
    std::cout << dump(inspect_json(g.db, res.run_id), 2) << std::endl;
    return;
  }
  std::cout << "run " << shown(res.run_id) << " " << to_string(res.status);
  if (res.err) std::cout << ": " << res.err->code << ": " << shown(res.err->message);
  std::cout << "\n";
  for (const auto& [id, out] : res.outputs)
    std::cout << "  " << shown(id) << ": " << shown_json(out) << "\n";
}

/// Drives one run (started or resumed by `begin`) to its end with live
/// progress and signal handling; returns the exit code.
int drive(const globals& g, const std::function<run_handle(engine&, event_handler)>& begin) {
  signal_guard signals;
  engine_config cfg;
  cfg.db_path = g.db;
  engine eng{cfg};
  signals.watch(eng);
  register_builtin_computes(eng);
  auto prog = std::make_shared<progress>(!g.json() && ::isatty(STDERR_FILENO));
  auto handle = begin(eng, [prog](const event& e) { prog->on_event(e); });
  auto res = handle.wait();
  signals.release();
  prog->done();
  if (int sig = signals.received(); sig != 0 && res.status == run_status::running) {
    std::cerr << "run " << res.run_id << " interrupted by " << signal_guard::signal_name(sig)
              << "; its attempts in flight were stopped; `smithers resume " << res.run_id
              << "` continues it\n";
    return 128 + sig;
  }
  if (res.status == run_status::running && res.err && res.err->details.contains("handover_to")) {
    // A forced resume in another process took the run over: it goes on
    // there. Not finished, not failed: exit 1 with what happened.
    if (g.json())
      std::cout << dump(json{{"run_id", res.run_id},
                             {"status", "running"},
                             {"handed_over_to", res.err->details["handover_to"]}})
                << std::endl;
    else
      std::cerr << "run " << res.run_id
                << " was handed over to another process (smithers resume --force); its attempts "
                   "in flight were stopped and it goes on there\n";
    return exit_failed;
  }
  print_result(g, res);
  return exit_code_for(res.status);
}

} // namespace

void add_run_command(CLI::App& app, const globals& g, int& result) {
  struct run_args {
    std::string workflow;
    std::string input;
    std::string run_id;
    std::string max_concurrency;
    std::string max_output_bytes;
  };
  auto args = std::make_shared<run_args>();
  auto* cmd = app.add_subcommand("run", "start a run and drive it until it ends");
  cmd->add_option("workflow", args->workflow, "workflow file (JSON)")->required();
  cmd->add_option("--input", args->input, "input JSON, @file, or - for stdin");
  auto* rid = cmd->add_option("--run-id", args->run_id, "run id (default: generated)");
  auto* mc = cmd->add_option("--max-concurrency", args->max_concurrency,
                             "tasks in flight at most (overrides the workflow)");
  auto* mob = cmd->add_option("--max-output-bytes", args->max_output_bytes,
                              "largest task output, serialized (default 4 MiB; kept by resumes)");
  cmd->callback([&g, &result, args, mc, mob, rid] {
    // Given but empty is a bad id, not "generate one".
    if (rid->count() > 0)
      if (auto err = util::check_run_id(args->run_id)) throw smithers_error(*err);
    auto parsed = load_workflow_or_throw(args->workflow);
    // Recorded absolute, so resume and supervise find it from anywhere.
    std::error_code ec;
    auto absolute = std::filesystem::absolute(args->workflow, ec);
    std::string recorded_path = ec ? args->workflow : absolute.lexically_normal().string();
    run_options opts;
    opts.run_id = args->run_id;
    opts.input = args->input.empty() ? json::object() : read_input(args->input);
    if (mc->count() > 0)
      opts.max_concurrency =
          parse_integer(args->max_concurrency, "--max-concurrency", 1, limits::max_option_value);
    if (mob->count() > 0)
      opts.max_output_bytes = static_cast<std::size_t>(
          parse_integer(args->max_output_bytes, "--max-output-bytes", 1,
                        static_cast<std::int64_t>(limits::max_output_bytes_ceiling)));
    opts.workflow_path = recorded_path;
    opts.workflow_hash = parsed.hash;
    opts.vcs_revision = git_revision(args->workflow);
    // Everything is checked before the database is opened: bad input leaves
    // no trace, not even a new database file.
    validate_run(*parsed.wf, opts, is_builtin_compute);
    if (!opts.run_id.empty()) {
      auto store = run_store::open_existing(g.db);
      if (store && store->find(opts.run_id))
        throw smithers_error(errc::invalid_run_id,
                             "a run with id \"" + opts.run_id + "\" already exists");
    }

    result = drive(g, [&](engine& eng, event_handler on_event) {
      opts.on_event = std::move(on_event);
      return eng.start(std::make_shared<const workflow>(std::move(*parsed.wf)), opts);
    });
  });

  struct fork_args {
    std::string run_id;
    std::string frame_text;
    std::int64_t frame = 0;
    std::vector<std::string> reset;
    std::string new_id;
    bool run = false;
  };
  auto fa = std::make_shared<fork_args>();
  auto* fork = app.add_subcommand("fork", "new run from a frame of another (time travel)");
  fork->add_option("run_id", fa->run_id, "the run to fork")->required();
  fork->add_option("--frame", fa->frame_text, "frame number (see smithers timeline)")->required();
  fork->add_option("--reset-node", fa->reset,
                   "run this node again, with every task that needs it (repeatable)");
  fork->add_option("--run-id", fa->new_id, "the new run's id (default: <run>-fork-<hex>)");
  fork->add_flag("--run", fa->run, "drive the new run now (like resume)");
  fork->callback([&g, &result, fa] {
    fa->frame = parse_integer(fa->frame_text, "--frame", 0, std::int64_t{0xFFFFFFFF});
    auto forked =
        run_store::open_for(g.db, fa->run_id).fork(fa->run_id, fa->frame, fa->reset, fa->new_id);
    const std::string& path = forked.workflow_path;
    if (!fa->run) {
      if (g.json())
        std::cout << dump(json{{"run_id", forked.run_id},
                               {"status", "created"},
                               {"parent_run_id", fa->run_id},
                               {"frame_no", fa->frame},
                               {"reset_nodes", forked.reset}})
                  << std::endl;
      else
        std::cout << "forked run " << shown(forked.run_id) << " from " << shown(fa->run_id)
                  << " at frame " << fa->frame
                  << " (status created: nothing runs it until `smithers resume "
                  << shown(forked.run_id) << "`)\n";
      result = exit_finished;
      return;
    }
    if (path.empty())
      throw smithers_error(errc::invalid_argument,
                           "run \"" + fa->run_id +
                               "\" was not started from a file; resume the fork with --workflow");
    auto parsed = load_workflow_or_throw(path);
    result = drive(g, [&](engine& eng, event_handler on_event) {
      resume_options opts;
      opts.workflow_hash = parsed.hash;
      opts.vcs_revision = git_revision(path);
      opts.on_event = std::move(on_event);
      return eng.resume(std::make_shared<const workflow>(std::move(*parsed.wf)), forked.run_id,
                        opts);
    });
  });

  struct resume_args {
    std::string run_id;
    std::string workflow;
    bool force = false;
  };
  auto ra = std::make_shared<resume_args>();
  auto* resume = app.add_subcommand("resume", "continue a run after a crash or an interrupt");
  resume->add_option("run_id", ra->run_id, "run id")->required();
  resume->add_option("--workflow", ra->workflow,
                     "workflow file (default: the file the run was started from)");
  resume->add_flag("--force", ra->force,
                   "resume even if the owner seems alive or the workflow changed");
  resume->callback([&g, &result, ra] {
    std::string path = ra->workflow;
    // Checked before an engine opens (and so creates) the database.
    auto run = run_store::open_for(g.db, ra->run_id).get(ra->run_id);
    if (path.empty()) {
      path = run.workflow_path;
      if (path.empty())
        throw smithers_error(errc::invalid_argument,
                             "run \"" + ra->run_id +
                                 "\" was not started from a file: pass --workflow FILE");
    }
    auto parsed = load_workflow_or_throw(path);
    result = drive(g, [&](engine& eng, event_handler on_event) {
      resume_options opts;
      opts.force = ra->force;
      opts.workflow_hash = parsed.hash;
      opts.vcs_revision = git_revision(path);
      opts.on_event = std::move(on_event);
      return eng.resume(std::make_shared<const workflow>(std::move(*parsed.wf)), ra->run_id, opts);
    });
  });
}

} // namespace smithers::cli
