// smithers run, fork and resume: the commands that start a run or continue
// one and drive it to its end (run_driver.hpp), with live progress on a
// terminal.
#include "cli.hpp"
#include "run_driver.hpp"
#include "run_report.hpp"

#include "format/parse.hpp"
#include "util/ids.hpp"

#include <smithers/admin.hpp>
#include <smithers/engine.hpp>
#include <smithers/limits.hpp>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>

namespace smithers::cli {

void add_run_command(CLI::App& app, const globals& g, int& result) {
  struct run_args {
    std::string workflow;
    std::string input;
    std::string run_id;
    std::string max_concurrency;
    std::string max_output_bytes;
    bool wait = false;
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
  cmd->add_flag("--wait", args->wait,
                "keep waiting in the foreground for approvals and signals (no exit 3)");
  cmd->callback([&g, &result, args, mc, mob, rid] {
    check_worker_options(g);
    // Given but empty is a bad id, not "generate one".
    if (rid->count() > 0)
      if (auto err = util::check_new_run_id(args->run_id)) throw smithers_error(*err);
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
    validate_run(*parsed.wf, opts, compute_check(g));
    if (!opts.run_id.empty()) {
      auto store = run_store::open_existing(g.db);
      if (store && store->find(opts.run_id))
        throw smithers_error(errc::invalid_run_id,
                             "a run with id \"" + opts.run_id + "\" already exists");
    }

    // Waiting for a person or a signal, the run is let go of (exit 3),
    // unless --wait keeps driving it here.
    opts.release_when_waiting = !args->wait;
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
    check_worker_options(g);
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
      opts.on_event = std::move(on_event);
      opts.release_when_waiting = true;
      return resume_from_file(eng, forked.run_id, path, std::move(parsed), std::move(opts));
    });
  });

  struct resume_args {
    std::string run_id;
    std::string workflow;
    bool force = false;
    bool wait = false;
  };
  auto ra = std::make_shared<resume_args>();
  auto* resume = app.add_subcommand(
      "resume", "continue a run: after a crash, a decision, a signal; or retry a failed one");
  resume->add_option("run_id", ra->run_id, "run id")->required();
  resume->add_option("--workflow", ra->workflow,
                     "workflow file (default: the file the run was started from)");
  resume->add_flag("--force", ra->force,
                   "resume even if the owner seems alive or the workflow changed");
  resume->add_flag("--wait", ra->wait,
                   "keep waiting in the foreground for approvals and signals (no exit 3)");
  resume->callback([&g, &result, ra] {
    check_worker_options(g);
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
    // A run left waiting for a person or a signal that has not come: it
    // would only wait again. Said so, with what continues it; nothing is
    // written (--wait drives it and waits in the foreground).
    auto st = run_status_from(run.status);
    if (!ra->wait && driver_of(run, default_stale_after) != run_driver::alive &&
        (st == run_status::waiting_approval || st == run_status::waiting_event)) {
      auto store = run_store::open_for(g.db, ra->run_id);
      json waiting = store.inspect(ra->run_id)["waiting"];
      // A deadline (a timer, a signal's timeout) needs an owner to sleep on it.
      bool deadline = std::any_of(waiting.begin(), waiting.end(),
                                  [](const json& w) { return !w["deadline_ms"].is_null(); });
      bool ready = store.wait_ready(ra->run_id);
      // Read again: another resumer (or supervise) may have taken the run
      // meanwhile — then the resume below says so, as for any driven run.
      auto again = store.get(ra->run_id);
      bool unchanged = again.status == run.status && again.owner_id == run.owner_id &&
                       again.heartbeat_ms == run.heartbeat_ms;
      if (unchanged && !waiting.empty() && !deadline && !ready) {
        if (g.json()) {
          std::cout << dump(json{
                           {"run_id", ra->run_id},
                           {"status", run.status},
                           {"waiting", waiting},
                           {"continue_with", continue_commands(g, ra->run_id, waiting)},
                           {"resume", smithers_command(g) + " resume " + shell_word(ra->run_id)}})
                    << std::endl;
        } else {
          std::cout << "run " << shown(ra->run_id) << " still " << run.status
                    << ": nothing it waits for has arrived\n";
          print_waiting(g, ra->run_id, waiting, std::cout);
        }
        result = exit_waiting;
        return;
      }
    }
    result = drive(g, [&](engine& eng, event_handler on_event) {
      resume_options opts;
      opts.force = ra->force;
      opts.release_when_waiting = !ra->wait;
      opts.on_event = std::move(on_event);
      return resume_from_file(eng, ra->run_id, path, std::move(parsed), std::move(opts));
    });
  });
}

} // namespace smithers::cli
