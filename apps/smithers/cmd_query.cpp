// smithers ps / inspect / logs: read-only views of the database, on their
// own connection (never the owning process's writer).
#include "cli.hpp"

#include "store/reader.hpp"
#include "store/writer.hpp"

#include <smithers/events.hpp>

#include <chrono>
#include <iomanip>
#include <iostream>
#include <thread>

namespace smithers::cli {

namespace {

// The database a reader may look at, or RUN_NOT_FOUND: no database yet (or
// one whose creator died before its schema existed) holds no runs.
store::database open_for_run(const std::string& db_path, const std::string& run_id) {
  auto db = store::database::open_existing(db_path);
  if (!db)
    throw smithers_error(errc::run_not_found,
                         "no run with id \"" + run_id + "\" (no database at " + db_path + ")");
  return std::move(*db);
}

store::run_row require_run(const store::reader& rd, const std::string& run_id) {
  auto run = rd.run(run_id);
  if (!run) throw smithers_error(errc::run_not_found, "no run with id \"" + run_id + "\"");
  return *run;
}

json run_to_json(const store::run_row& r) {
  return {{"run_id", r.run_id},
          {"workflow", r.workflow_name},
          {"status", r.status},
          {"input", r.input},
          {"config", r.config},
          {"workflow_path", r.workflow_path},
          {"workflow_hash", r.workflow_hash},
          {"owner_pid", r.owner_pid},
          {"error", r.error},
          {"created_ms", r.created_ms},
          {"updated_ms", r.updated_ms},
          {"finished_ms", r.finished_ms ? json(*r.finished_ms) : json()}};
}

std::string pad(std::string s, std::size_t w) {
  if (s.size() < w) s.append(w - s.size(), ' ');
  return s;
}

std::string error_text(const json& err) {
  if (err.is_null()) return "";
  return err.value("code", std::string{}) + ": " + err.value("message", std::string{});
}

} // namespace

json inspect_json(const std::string& db_path, const std::string& run_id) {
  auto db = open_for_run(db_path, run_id);
  store::reader rd{db};
  auto run = require_run(rd, run_id);
  json nodes = json::array();
  for (const auto& n : rd.nodes(run_id))
    nodes.push_back({{"node_id", n.node_id},
                     {"iteration", n.iteration},
                     {"state", n.state},
                     {"kind", n.kind},
                     {"label", n.label},
                     {"attempts", n.attempts}});
  json attempts = json::array();
  for (const auto& a : rd.attempts(run_id)) {
    json j = {{"node_id", a.node_id},
              {"iteration", a.iteration},
              {"attempt", a.attempt},
              {"state", a.state},
              {"started_ms", a.started_ms},
              {"finished_ms", a.finished_ms ? json(*a.finished_ms) : json()},
              {"duration_ms", a.finished_ms ? json(*a.finished_ms - a.started_ms) : json()},
              {"error", a.error},
              {"heartbeat_ms", a.heartbeat_ms ? json(*a.heartbeat_ms) : json()},
              {"heartbeat_bytes", a.heartbeat.is_null() ? 0 : dump(a.heartbeat).size()},
              {"cached", a.cached}};
    attempts.push_back(std::move(j));
  }
  json outputs = json::object();
  for (const auto& o : rd.outputs(run_id))
    outputs[o.node_id] = o.value;
  return {{"run", run_to_json(run)},
          {"nodes", nodes},
          {"attempts", attempts},
          {"outputs", outputs},
          {"frames", rd.frame_count(run_id)}};
}

void add_query_commands(CLI::App& app, const globals& g, int& result) {
  // ps
  auto status = std::make_shared<std::string>();
  auto* ps = app.add_subcommand("ps", "list runs, newest first");
  ps->add_option("--status", *status, "only runs with this status");
  ps->callback([&g, &result, status] {
    if (!status->empty() && !run_status_from(*status))
      throw smithers_error(errc::invalid_argument, "unknown status \"" + *status +
                                                       "\" (running, waiting-approval, "
                                                       "waiting-event, waiting-timer, finished, "
                                                       "failed, cancelled, continued)");
    std::vector<store::run_row> runs;
    if (auto db = store::database::open_existing(g.db)) runs = store::reader{*db}.runs(*status);
    if (g.json()) {
      json list = json::array();
      for (const auto& r : runs)
        list.push_back(run_to_json(r));
      std::cout << dump(list, 2) << std::endl;
    } else {
      std::cout << pad("RUN ID", 34) << pad("STATUS", 18) << pad("WORKFLOW", 24)
                << pad("STARTED (UTC)", 25) << "DURATION\n";
      for (const auto& r : runs) {
        auto end = r.finished_ms.value_or(r.updated_ms);
        std::cout << pad(r.run_id, 34) << pad(r.status, 18) << pad(r.workflow_name, 24)
                  << pad(format_time(r.created_ms), 25)
                  << (r.finished_ms ? format_duration(end - r.created_ms) : "-") << "\n";
      }
    }
    result = exit_finished;
  });

  // inspect
  auto inspect_id = std::make_shared<std::string>();
  auto* inspect = app.add_subcommand("inspect", "nodes, attempts, outputs and errors of a run");
  inspect->add_option("run_id", *inspect_id, "run id")->required();
  inspect->callback([&g, &result, inspect_id] {
    json j = inspect_json(g.db, *inspect_id);
    if (g.json()) {
      std::cout << dump(j, 2) << std::endl;
      result = exit_finished;
      return;
    }
    const auto& r = j["run"];
    std::cout << "run       " << r["run_id"].get<std::string>() << "\n"
              << "workflow  " << r["workflow"].get<std::string>();
    if (!r["workflow_path"].get<std::string>().empty())
      std::cout << " (" << r["workflow_path"].get<std::string>() << ")";
    std::cout << "\nstatus    " << r["status"].get<std::string>() << "\n"
              << "started   " << format_time(r["created_ms"].get<std::int64_t>()) << "\n";
    if (!r["finished_ms"].is_null())
      std::cout << "finished  " << format_time(r["finished_ms"].get<std::int64_t>()) << " ("
                << format_duration(r["finished_ms"].get<std::int64_t>() -
                                   r["created_ms"].get<std::int64_t>())
                << ")\n";
    if (!r["error"].is_null()) std::cout << "error     " << error_text(r["error"]) << "\n";
    std::cout << "input     " << dump(r["input"]) << "\n\nNODES\n";
    for (const auto& n : j["nodes"])
      std::cout << "  " << pad(n["node_id"].get<std::string>(), 24)
                << pad(n["state"].get<std::string>(), 14) << pad(n["kind"].get<std::string>(), 9)
                << n["attempts"].get<std::int64_t>() << " attempt(s)\n";
    std::cout << "\nATTEMPTS\n";
    for (const auto& a : j["attempts"]) {
      std::cout << "  "
                << pad(a["node_id"].get<std::string>() + " #" +
                           std::to_string(a["attempt"].get<std::int64_t>()),
                       28)
                << pad(a["state"].get<std::string>(), 13)
                << pad(format_time(a["started_ms"].get<std::int64_t>()), 25)
                << pad(a["duration_ms"].is_null()
                           ? std::string{"-"}
                           : format_duration(a["duration_ms"].get<std::int64_t>()),
                       10);
      if (!a["heartbeat_ms"].is_null())
        std::cout << " heartbeat " << format_time(a["heartbeat_ms"].get<std::int64_t>()) << " ("
                  << a["heartbeat_bytes"].get<std::size_t>() << " B)";
      if (!a["error"].is_null()) std::cout << " " << error_text(a["error"]);
      std::cout << "\n";
    }
    std::cout << "\nOUTPUTS\n";
    for (const auto& [id, out] : j["outputs"].items())
      std::cout << "  " << pad(id, 24) << dump(out) << "\n";
    result = exit_finished;
  });

  // timeline
  auto tl_id = std::make_shared<std::string>();
  auto* timeline = app.add_subcommand("timeline", "frames and forks of a run");
  timeline->add_option("run_id", *tl_id, "run id")->required();
  timeline->callback([&g, &result, tl_id] {
    auto db = open_for_run(g.db, *tl_id);
    store::reader rd{db};
    auto run = require_run(rd, *tl_id);
    auto frames = rd.frame_summaries(*tl_id);
    auto forks = rd.children(*tl_id);
    if (g.json()) {
      json fl = json::array();
      for (const auto& f : frames)
        fl.push_back({{"frame_no", f.frame_no},
                      {"created_ms", f.created_ms},
                      {"tree_hash", f.tree_hash},
                      {"keyframe", f.keyframe},
                      {"changes", f.changes}});
      json kids = json::array();
      for (const auto& c : forks)
        kids.push_back(
            {{"run_id", c.run_id},
             {"status", c.status},
             {"frame_no", c.config.contains("fork") ? c.config["fork"]["frame_no"] : json()},
             {"reset_nodes",
              c.config.contains("fork") ? c.config["fork"]["reset_nodes"] : json::array()}});
      std::cout << dump(json{{"run_id", *tl_id},
                             {"parent_run_id",
                              run.parent_run_id.empty() ? json() : json(run.parent_run_id)},
                             {"frames", fl},
                             {"forks", kids}},
                        2)
                << std::endl;
      result = exit_finished;
      return;
    }
    std::cout << "run " << *tl_id << " (" << run.status << ")";
    if (!run.parent_run_id.empty())
      std::cout << ", forked from " << run.parent_run_id << " at frame "
                << run.config["fork"].value("frame_no", std::int64_t{0});
    std::cout << "\n\nFRAMES\n";
    for (const auto& f : frames)
      std::cout << "  " << std::setw(5) << f.frame_no << "  " << format_time(f.created_ms) << "  "
                << (f.keyframe ? "key  " : "delta") << "  " << std::setw(6) << f.changes
                << " node(s)  tree " << f.tree_hash.substr(0, 12) << "\n";
    std::cout << "\nFORKS\n";
    if (forks.empty()) std::cout << "  (none)\n";
    for (const auto& c : forks)
      std::cout << "  " << pad(c.run_id, 34) << pad(c.status, 12) << "from frame "
                << c.config["fork"].value("frame_no", std::int64_t{0}) << "\n";
    result = exit_finished;
  });

  // cancel
  auto cancel_id = std::make_shared<std::string>();
  auto* cancel = app.add_subcommand("cancel", "request cancellation of a run, whoever owns it");
  cancel->add_option("run_id", *cancel_id, "run id")->required();
  cancel->callback([&g, &result, cancel_id] {
    {
      auto db = open_for_run(g.db, *cancel_id);
      auto run = require_run(store::reader{db}, *cancel_id);
      auto st = run_status_from(run.status);
      if (st && is_terminal(*st))
        throw smithers_error(errc::invalid_argument,
                             "run \"" + *cancel_id + "\" has already ended (" + run.status + ")");
    }
    // A second writer next to the owner's: BEGIN IMMEDIATE and busy_timeout
    // make them take turns.
    auto db = store::database::open(g.db, store::open_mode::read_write);
    store::writer{db}.apply({store::request_cancel{*cancel_id}});
    if (g.json())
      std::cout << dump(json{{"run_id", *cancel_id}, {"cancel_requested", true}}) << std::endl;
    else
      std::cout << "cancellation of run " << *cancel_id
                << " requested; the process driving it stops it within a second\n";
    result = exit_finished;
  });

  // logs
  struct logs_args {
    std::string run_id;
    bool follow = false;
  };
  auto la = std::make_shared<logs_args>();
  auto* logs = app.add_subcommand("logs", "the event stream of a run");
  logs->add_option("run_id", la->run_id, "run id")->required();
  logs->add_flag("-f,--follow", la->follow, "keep printing events until the run ends");
  logs->callback([&g, &result, la] {
    auto db = open_for_run(g.db, la->run_id);
    store::reader rd{db};
    require_run(rd, la->run_id);
    std::int64_t last = -1;
    for (;;) {
      for (const auto& e : rd.events(la->run_id, last)) {
        last = e.seq;
        if (g.json()) {
          std::cout << dump(e.payload) << "\n";
        } else {
          auto ev = event::from_json(e.payload);
          std::cout << std::setw(6) << e.seq << "  " << format_time(e.timestamp_ms) << "  "
                    << pad(e.type, 18) << dump(ev.fields) << "\n";
        }
      }
      std::cout << std::flush;
      if (!la->follow) break;
      auto run = rd.run(la->run_id);
      auto st = run ? run_status_from(run->status) : std::nullopt;
      if (st && is_terminal(*st)) {
        // One more read: events committed together with the final status.
        if (rd.events(la->run_id, last, 1).empty()) break;
        continue;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    result = exit_finished;
  });
}

} // namespace smithers::cli
