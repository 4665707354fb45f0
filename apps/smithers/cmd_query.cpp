// smithers ps / inspect / logs: read-only views of the database, on their
// own connection (never the owning process's writer).
#include "cli.hpp"

#include "store/cancel.hpp"
#include "store/reader.hpp"
#include "store/writer.hpp"
#include "util/clock.hpp"
#include "util/owner.hpp"

#include <smithers/engine.hpp>

#include <smithers/events.hpp>

#include <array>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace smithers::cli {

namespace {

// logs -f: how often it reads, how long it waits for a run id that does not
// exist yet, and how long a run may go undriven (a handover) before it stops.
constexpr std::chrono::milliseconds follow_poll{200};
constexpr std::chrono::milliseconds follow_wait_for_run{10000};
constexpr std::chrono::milliseconds follow_unowned_grace{5000};

// How long `cancel` waits for a live owner to act on its request before it
// reports what it knows.
constexpr std::chrono::milliseconds cancel_confirm_wait{3000};

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
          {"cwd", r.cwd},
          {"owner_pid", r.owner_pid},
          {"error", r.error},
          {"created_ms", r.created_ms},
          {"updated_ms", r.updated_ms},
          {"finished_ms", r.finished_ms ? json(*r.finished_ms) : json()}};
}

// Columns count characters, not bytes: a UTF-8 name is as wide as its
// code points (good enough for the names and states shown here).
std::size_t display_width(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s)
    n += (c & 0xC0) != 0x80;
  return n;
}

std::string pad(std::string s, std::size_t w) {
  auto n = display_width(s);
  if (n < w) s.append(w - n, ' ');
  return s;
}

// An error's lines for text output: "CODE: message", then what its details
// hold for a reader (exit code, signal, the tails of stdout and stderr).
std::vector<std::string> error_lines(const json& err) {
  std::vector<std::string> lines;
  if (err.is_null()) return lines;
  lines.push_back(err.value("code", std::string{}) + ": " +
                  shown(err.value("message", std::string{})));
  const json& d = err.contains("details") ? err["details"] : json::object();
  if (!d.is_object()) return lines;
  for (const char* key : {"exit_code", "signal", "timeout_ms", "heartbeat_timeout_ms", "path"})
    if (d.contains(key)) lines.push_back(std::string{key} + ": " + shown_json(d[key]));
  for (const char* key : {"stdout_tail", "stderr_tail"}) {
    if (!d.contains(key) || !d[key].is_string() || d[key].get<std::string>().empty()) continue;
    lines.push_back(std::string{key == std::string{"stdout_tail"} ? "stdout" : "stderr"} +
                    " (last lines):");
    std::istringstream in(d[key].get<std::string>());
    std::string line;
    while (std::getline(in, line))
      lines.push_back("  | " + shown(line));
  }
  if (d.contains("problems") && d["problems"].is_array())
    for (const auto& p : d["problems"])
      lines.push_back(shown(p.value("path", std::string{})) + ": " +
                      shown(p.value("message", std::string{})));
  return lines;
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
  struct ps_args {
    std::string status;
    std::string limit = "1000";
  };
  auto pa = std::make_shared<ps_args>();
  auto* ps = app.add_subcommand("ps", "list runs, newest first");
  ps->add_option("--status", pa->status, "only runs with this status");
  ps->add_option("--limit", pa->limit, "at most this many runs (default 1000; 0: all)");
  ps->callback([&g, &result, pa] {
    const std::string* status = &pa->status;
    auto limit = static_cast<std::size_t>(parse_integer(pa->limit, "--limit", 0, 1000000000));
    if (!status->empty() && !run_status_from(*status))
      throw smithers_error(errc::invalid_argument, "unknown status \"" + *status +
                                                       "\" (created, running, waiting-approval, "
                                                       "waiting-event, waiting-timer, finished, "
                                                       "failed, cancelled, continued)");
    std::vector<store::run_row> runs;
    std::size_t total = 0;
    if (auto db = store::database::open_existing(g.db)) {
      store::reader rd{*db};
      runs = rd.runs(*status, limit == 0 ? static_cast<std::size_t>(-1) : limit);
      total = runs.size() < limit || limit == 0 ? runs.size() : rd.run_count(*status);
    }
    if (g.json()) {
      json list = json::array();
      for (const auto& r : runs)
        list.push_back(run_to_json(r));
      std::cout << dump(list, 2) << std::endl;
    } else {
      // Columns as wide as their widest cell, so long ids keep them aligned.
      std::vector<std::array<std::string, 5>> rows;
      rows.push_back({"RUN ID", "STATUS", "WORKFLOW", "STARTED (UTC)", "DURATION"});
      for (const auto& r : runs) {
        auto end = r.finished_ms.value_or(r.updated_ms);
        rows.push_back({shown(r.run_id), r.status, shown(r.workflow_name),
                        format_time(r.created_ms),
                        r.finished_ms ? format_duration(end - r.created_ms) : "-"});
      }
      std::array<std::size_t, 5> width{};
      for (const auto& row : rows)
        for (std::size_t c = 0; c < row.size(); ++c)
          width[c] = std::max(width[c], display_width(row[c]));
      for (const auto& row : rows) {
        for (std::size_t c = 0; c + 1 < row.size(); ++c)
          std::cout << pad(row[c], width[c] + 2);
        std::cout << row.back() << "\n";
      }
    }
    // Never a silent cut: say what was left out (stderr, in both formats).
    if (total > runs.size())
      std::cerr << "ps: showing the newest " << runs.size() << " of " << total
                << " runs; --limit N shows more (0: all)\n";
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
    std::cout << "run       " << shown(r["run_id"].get<std::string>()) << "\n"
              << "workflow  " << shown(r["workflow"].get<std::string>());
    if (!r["workflow_path"].get<std::string>().empty())
      std::cout << " (" << shown(r["workflow_path"].get<std::string>()) << ")";
    std::cout << "\nstatus    " << r["status"].get<std::string>() << "\n";
    if (!r["cwd"].get<std::string>().empty())
      std::cout << "cwd       " << shown(r["cwd"].get<std::string>()) << "\n";
    std::cout << "started   " << format_time(r["created_ms"].get<std::int64_t>()) << "\n";
    if (!r["finished_ms"].is_null())
      std::cout << "finished  " << format_time(r["finished_ms"].get<std::int64_t>()) << " ("
                << format_duration(r["finished_ms"].get<std::int64_t>() -
                                   r["created_ms"].get<std::int64_t>())
                << ")\n";
    if (!r["error"].is_null()) {
      auto lines = error_lines(r["error"]);
      for (std::size_t i = 0; i < lines.size(); ++i)
        std::cout << (i == 0 ? "error     " : "          ") << lines[i] << "\n";
    }
    std::cout << "input     " << shown_json(r["input"]) << "\n\nNODES\n";
    std::size_t id_width = 24;
    for (const auto& n : j["nodes"])
      id_width = std::max(id_width, display_width(n["node_id"].get<std::string>()) + 2);
    for (const auto& n : j["nodes"]) {
      std::cout << "  " << pad(shown(n["node_id"].get<std::string>()), id_width)
                << pad(n["state"].get<std::string>(), 14) << pad(n["kind"].get<std::string>(), 9)
                << n["attempts"].get<std::int64_t>() << " attempt(s)";
      if (!n["label"].get<std::string>().empty())
        std::cout << "  \"" << shown(n["label"].get<std::string>()) << "\"";
      std::cout << "\n";
    }
    std::cout << "\nATTEMPTS\n";
    for (const auto& a : j["attempts"]) {
      std::cout << "  "
                << pad(shown(a["node_id"].get<std::string>()) + " #" +
                           std::to_string(a["attempt"].get<std::int64_t>()),
                       id_width + 4)
                << pad(a["state"].get<std::string>(), 13)
                << pad(format_time(a["started_ms"].get<std::int64_t>()), 25)
                << pad(a["duration_ms"].is_null()
                           ? std::string{"-"}
                           : format_duration(a["duration_ms"].get<std::int64_t>()),
                       10);
      if (a["cached"].get<bool>()) std::cout << " cached";
      if (!a["heartbeat_ms"].is_null())
        std::cout << " heartbeat " << format_time(a["heartbeat_ms"].get<std::int64_t>()) << " ("
                  << a["heartbeat_bytes"].get<std::size_t>() << " B)";
      std::cout << "\n";
      for (const auto& line : error_lines(a["error"]))
        std::cout << "      " << line << "\n";
    }
    std::cout << "\nOUTPUTS\n";
    for (const auto& [id, out] : j["outputs"].items())
      std::cout << "  " << pad(shown(id), id_width) << shown_json(out) << "\n";
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
    // What each frame changed: a delta holds exactly that; a keyframe holds
    // every node, compared here with the states before it.
    std::vector<json> changed;
    {
      std::map<std::string, std::string> now;
      for (auto& [no, states] : rd.frame_states(*tl_id)) {
        json diff = json::object();
        for (const auto& [id, st] : states.items()) {
          if (!st.is_string()) continue;
          auto& cur = now[id];
          if (cur != st.get<std::string>()) diff[id] = st;
          cur = st.get<std::string>();
        }
        changed.push_back(std::move(diff));
      }
    }
    auto changed_at = [&](std::size_t i) {
      return i < changed.size() ? changed[i] : json::object();
    };
    if (g.json()) {
      json fl = json::array();
      for (std::size_t i = 0; i < frames.size(); ++i) {
        const auto& f = frames[i];
        fl.push_back({{"frame_no", f.frame_no},
                      {"created_ms", f.created_ms},
                      {"tree_hash", f.tree_hash},
                      {"keyframe", f.keyframe},
                      {"changes", f.changes},
                      {"changed", changed_at(i)}});
      }
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
    std::cout << "run " << shown(*tl_id) << " (" << run.status << ")";
    if (!run.parent_run_id.empty())
      std::cout << ", forked from " << shown(run.parent_run_id) << " at frame "
                << run.config["fork"].value("frame_no", std::int64_t{0});
    std::cout << "\n\nFRAMES\n";
    constexpr std::size_t shown_changes = 6;
    for (std::size_t i = 0; i < frames.size(); ++i) {
      const auto& f = frames[i];
      std::cout << "  " << std::setw(5) << f.frame_no << "  " << format_time(f.created_ms) << "  "
                << (f.keyframe ? "key  " : "delta") << "  " << std::setw(6) << f.changes
                << " node(s)  tree " << f.tree_hash.substr(0, 12);
      auto diff = changed_at(i);
      std::size_t k = 0;
      for (const auto& [id, st] : diff.items()) {
        if (k++ == shown_changes) {
          std::cout << " +" << diff.size() - shown_changes << " more";
          break;
        }
        std::cout << (k == 1 ? "  " : " ") << shown(id) << ":" << shown(st.get<std::string>());
      }
      std::cout << "\n";
    }
    std::cout << "\nFORKS\n";
    if (forks.empty()) std::cout << "  (none)\n";
    for (const auto& c : forks)
      std::cout << "  " << pad(shown(c.run_id), 34) << pad(c.status, 12) << "from frame "
                << c.config["fork"].value("frame_no", std::int64_t{0}) << "\n";
    result = exit_finished;
  });

  // cancel
  auto cancel_id = std::make_shared<std::string>();
  auto* cancel = app.add_subcommand("cancel", "cancel a run, whoever owns it");
  cancel->add_option("run_id", *cancel_id, "run id")->required();
  cancel->callback([&g, &result, cancel_id] {
    open_for_run(g.db, *cancel_id); // RUN_NOT_FOUND without creating a database
    // A second writer next to the owner's: BEGIN IMMEDIATE and busy_timeout
    // make them take turns.
    auto db = store::database::open(g.db, store::open_mode::read_write);
    auto now = util::now_ms();
    store::unowned_cancel req{*cancel_id, util::make_owner_id(),
                              static_cast<std::int64_t>(::getpid()), now,
                              error{errc::run_cancelled, "cancelled by smithers cancel"}};
    store::cancel_outcome out;
    for (int tries = 0;; ++tries) {
      try {
        out = store::cancel_stored_run(db, req, default_stale_after.count());
        break;
      } catch (const smithers_error& e) {
        // A resumer claimed the run between our read and our write: look again.
        if (e.code() != errc::run_resume_claim_failed || tries == 3) throw;
      }
    }
    const auto& run = out.run;
    if (!out.requested) {
      for (const auto& m : out.ended.process_groups)
        util::end_orphaned_group(m.value("host", std::string{}), m.value("pgid", std::int64_t{0}),
                                 m.value("pgid_start", std::int64_t{0}));
      std::string who = run.owner_id.empty() ? "no process had started it"
                                             : "the process that drove it (pid " +
                                                   std::to_string(run.owner_pid) + ") is gone";
      if (g.json())
        std::cout << dump(json{{"run_id", *cancel_id},
                               {"status", "cancelled"},
                               {"cancelled_by", "this command"},
                               {"attempts_cancelled", out.ended.attempts},
                               {"nodes_cancelled", out.ended.nodes}})
                  << std::endl;
      else
        std::cout << "run " << *cancel_id << " cancelled: " << who << "; " << out.ended.attempts
                  << " attempt(s) it left in flight and " << out.ended.nodes
                  << " node(s) that had not ended recorded cancelled\n";
      result = exit_finished;
      return;
    }
    // A live owner stops it: wait a little to say what happened.
    store::reader rd{db};
    std::string status = run.status;
    auto until = std::chrono::steady_clock::now() + cancel_confirm_wait;
    while (std::chrono::steady_clock::now() < until) {
      if (auto r = rd.run(*cancel_id)) status = r->status;
      if (status != "running" && status != "created") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    bool done = status == "cancelled";
    if (g.json())
      std::cout << dump(json{{"run_id", *cancel_id},
                             {"status", status},
                             {"cancel_requested", true},
                             {"owner_pid", run.owner_pid}})
                << std::endl;
    else if (done)
      std::cout << "run " << *cancel_id << " cancelled by the process driving it (pid "
                << run.owner_pid << ")\n";
    else if (status != "running")
      std::cout << "run " << *cancel_id << " ended " << status
                << " before the cancellation reached it\n";
    else
      std::cout << "cancellation of run " << *cancel_id
                << " requested; the process driving it (pid " << run.owner_pid
                << ") has not stopped it yet and will within a second\n";
    result = exit_finished;
  });

  // logs
  struct logs_args {
    std::string run_id;
    bool follow = false;
    std::string stale_after = "30s";
  };
  auto la = std::make_shared<logs_args>();
  auto* logs = app.add_subcommand("logs", "the event stream of a run");
  logs->add_option("run_id", la->run_id, "run id")->required();
  logs->add_flag("-f,--follow", la->follow, "keep printing events until the run ends");
  logs->add_option("--stale-after", la->stale_after,
                   "with -f: a heartbeat this old means the owner on another host is gone "
                   "(default 30s)");
  logs->callback([&g, &result, la] {
    auto stale_after = parse_duration(la->stale_after, "--stale-after");
    std::optional<store::database> db;
    if (la->follow) {
      // `smithers run --run-id X & smithers logs -f X`: the run may not
      // exist yet. Wait for it a little.
      auto until = std::chrono::steady_clock::now() + follow_wait_for_run;
      for (;;) {
        db = store::database::open_existing(g.db);
        if (db && store::reader{*db}.run_exists(la->run_id)) break;
        if (std::chrono::steady_clock::now() >= until) break;
        db.reset();
        std::this_thread::sleep_for(follow_poll);
      }
    }
    if (!db) db = open_for_run(g.db, la->run_id);
    store::reader rd{*db};
    require_run(rd, la->run_id);
    std::int64_t last = -1;
    auto print_new = [&] {
      for (const auto& e : rd.events(la->run_id, last)) {
        last = e.seq;
        if (g.json()) {
          std::cout << dump(e.payload) << "\n";
        } else {
          auto ev = event::from_json(e.payload);
          std::cout << std::setw(6) << e.seq << "  " << format_time(e.timestamp_ms) << "  "
                    << pad(e.type, 18) << shown_json(ev.fields) << "\n";
        }
      }
      std::cout << std::flush;
    };
    // Nobody driving the run: since when (a handover leaves it unowned for
    // a moment before the resumer claims it). A flag beside a plain
    // time_point: GCC 12 misreports an optional<time_point>.
    bool undriven = false;
    std::chrono::steady_clock::time_point undriven_since{};
    for (;;) {
      print_new();
      if (!std::cout) break; // nobody reads what we print (main says so)
      if (!la->follow) break;
      auto run = rd.run(la->run_id);
      if (!run) break; // deleted under us
      auto st = run_status_from(run->status);
      if (st && is_terminal(*st)) {
        // One more read: events committed together with the final status.
        if (rd.events(la->run_id, last, 1).empty()) break;
        continue;
      }
      auto driver = store::driver_of(*run, util::now_ms(), stale_after.count());
      if (driver == store::run_driver::alive) {
        undriven = false;
      } else {
        auto now = std::chrono::steady_clock::now();
        if (!undriven) undriven_since = now;
        undriven = true;
        if (driver == store::run_driver::gone || now - undriven_since >= follow_unowned_grace) {
          print_new();
          std::string why =
              run->status == "created"
                  ? "has not been started (`smithers resume " + shown(la->run_id) + "` starts it)"
              : driver == store::run_driver::gone
                  ? "lost the process driving it (pid " + std::to_string(run->owner_pid) +
                        (util::check_owner(run->owner_id) == util::owner_state::unknown
                             ? ", on another host, stopped heartbeating"
                             : ", is gone") +
                        "); `smithers resume " + shown(la->run_id) + "` continues it"
                  : "is not driven by any process; `smithers resume " + shown(la->run_id) +
                        "` continues it";
          // stderr in both formats: stdout stays the run's own events.
          std::cerr << "logs: run " << shown(la->run_id) << " " << why << "\n";
          result = exit_failed;
          return;
        }
      }
      std::this_thread::sleep_for(follow_poll);
    }
    result = exit_finished;
  });
}

} // namespace smithers::cli
