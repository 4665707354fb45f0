// smithers supervise: find runs whose owner died and resume them, forever
// (or once). Two supervisors may watch one database: the resume's
// compare-and-set claim lets exactly one of them take each run.
#include "cli.hpp"
#include "run_driver.hpp"

#include "format/parse.hpp"

#include <smithers/admin.hpp>
#include <smithers/engine.hpp>

#include <spdlog/spdlog.h>

#include <iostream>
#include <set>
#include <unistd.h>

namespace smithers::cli {

namespace {

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace

void add_supervise_command(CLI::App& app, const globals& g, int& result) {
  struct supervise_args {
    std::string interval = "30s";
    std::string stale_after = "30s";
    bool once = false;
  };
  auto sa = std::make_shared<supervise_args>();
  auto* cmd = app.add_subcommand(
      "supervise", "resume runs whose owner died, and waiting runs whose decision or signal came");
  cmd->add_option("--interval", sa->interval, "time between scans (default 30s)");
  cmd->add_option("--stale-after", sa->stale_after,
                  "a heartbeat this old marks an owner on another host as gone (default 30s)");
  cmd->add_flag("--once", sa->once, "scan once, drive what was resumed to its end, exit");
  cmd->callback([&g, &result, sa] {
    auto interval = parse_duration(sa->interval, "--interval");
    auto stale_after = parse_duration(sa->stale_after, "--stale-after");
    driving_engine host{g};
    auto& eng = host.eng();
    auto& signals = host.signals();
    std::vector<run_handle> driven;
    std::set<std::string> taken;
    auto say = [&](const json& j, const std::string& text) {
      if (g.json())
        std::cout << dump(j) << std::endl;
      else
        std::cout << text << std::endl;
    };
    std::vector<char> followed; // per driven run: its end has been seen
    auto take = [&](const std::string& run_id, const std::string& path) {
      auto parsed = spec::load_workflow_file(path);
      if (!parsed.wf)
        throw smithers_error(errc::invalid_workflow, path + ": " + spec::join(parsed.errors));
      resume_options opts;
      opts.stale_after = stale_after;
      // A run that comes to wait for a person or a signal again is let go
      // of, and taken again once that has arrived.
      opts.release_when_waiting = true;
      driven.push_back(resume_from_file(eng, run_id, path, std::move(parsed), std::move(opts)));
      followed.push_back(0);
      taken.insert(run_id);
    };
    // A driven run that ended `continued` (continue-as-new): its successor
    // is driven here too, at once (it waits for nobody else's claim).
    auto follow = [&](std::size_t i) {
      followed[i] = 1;
      auto res = driven[i].wait();
      say({{"run_id", res.run_id}, {"status", to_string(res.status)}},
          "run " + res.run_id + " " + to_string(res.status));
      if (res.status == run_status::waiting_approval || res.status == run_status::waiting_event)
        taken.erase(res.run_id); // released: the next decision or signal brings it back
      if (res.status != run_status::continued || res.continued_as.empty() || signals.received())
        return;
      try {
        auto next = run_store::open_for(g.db, res.continued_as).get(res.continued_as);
        take(next.run_id, next.workflow_path);
        say({{"resumed", next.run_id}, {"continued_from", res.run_id}},
            "resumed run " + next.run_id + " (it continues " + res.run_id + ")");
      } catch (const smithers_error& e) {
        say({{"skipped", res.continued_as}, {"error", e.err().to_json()}},
            "skipped run " + res.continued_as + ": " + shown(e.err().what()));
      }
    };
    for (;;) {
      for (std::size_t i = 0; i < driven.size(); ++i)
        if (!followed[i] && driven[i].wait_for(std::chrono::milliseconds{0})) follow(i);
      // Runs whose owner died (running, or waiting on a timer it kept), and
      // runs let go of while waiting whose decision, signal or deadline has
      // come (docs/waiting.md, "Continuing").
      std::vector<run_info> candidates;
      std::set<std::string> ready;
      if (auto store = run_store::open_existing(g.db)) {
        candidates = store->runs(to_string(run_status::running), static_cast<std::size_t>(-1));
        for (auto st :
             {run_status::waiting_approval, run_status::waiting_event, run_status::waiting_timer})
          for (auto& r : store->runs(to_string(st), static_cast<std::size_t>(-1)))
            candidates.push_back(std::move(r));
        for (auto& id : store->ready_waiting_runs())
          ready.insert(std::move(id));
      }
      for (const auto& run : candidates) {
        if (taken.count(run.run_id)) continue;
        auto driver = driver_of(run, stale_after);
        if (driver == run_driver::alive) continue;
        bool released =
            driver == run_driver::nobody && run.status != to_string(run_status::running);
        if (released && !ready.count(run.run_id)) continue; // nothing arrived yet
        // An unowned running run (a handover that never completed) waits out
        // its heartbeat too: its resumer may be about to claim it.
        if (!released && driver == run_driver::nobody &&
            now_ms() - run.heartbeat_ms < stale_after.count())
          continue;
        if (run.workflow_path.empty()) {
          spdlog::warn("run {} lost its owner but was not started from a file; skipped",
                       run.run_id);
          taken.insert(run.run_id);
          continue;
        }
        try {
          take(run.run_id, run.workflow_path);
          std::string why = released                  ? "what it waited for has come"
                            : owned_on_this_host(run) ? "its owner is gone"
                                                      : "its owner stopped heartbeating";
          say({{"resumed", run.run_id}, {"previous_owner", run.owner_id}, {"reason", why}},
              "resumed run " + run.run_id + " (" + why + ")");
        } catch (const smithers_error& e) {
          // Another supervisor won the claim, or the run cannot go on here.
          say({{"skipped", run.run_id}, {"error", e.err().to_json()}},
              "skipped run " + run.run_id + ": " + shown(e.err().what()));
          if (e.code() != errc::run_resume_claim_failed && e.code() != errc::run_owner_alive)
            taken.insert(run.run_id);
        } catch (const std::exception& e) {
          // Whatever one run holds, the others still get their turn.
          error err{errc::internal, std::string{"resuming the run failed: "} + e.what()};
          say({{"skipped", run.run_id}, {"error", err.to_json()}},
              "skipped run " + run.run_id + ": " + shown(err.what()));
          taken.insert(run.run_id);
        }
      }
      if (sa->once || signals.sleep_for(interval)) break;
    }
    for (std::size_t i = 0; i < driven.size(); ++i) // grows while chains go on
      if (!followed[i]) follow(i);
    signals.release();
    result = signals.received() ? 128 + signals.received() : exit_finished;
  });
}

} // namespace smithers::cli
