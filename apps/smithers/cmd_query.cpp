// smithers ps / inspect / logs / timeline / cancel: stored runs through the
// admin API (smithers/admin.hpp), on a connection of their own (never the
// owning process's writer).
#include "cli.hpp"
#include "run_report.hpp"

#include <smithers/admin.hpp>
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

// logs --node: the events of one node (every iteration; inside nested
// loops, "fix" matches each instance "fix@2"...).
bool about_node(const event& ev, const std::string& node) {
  auto it = ev.fields.find("node_id");
  if (it == ev.fields.end() || !it->is_string()) return false;
  const auto& id = it->get_ref<const std::string&>();
  return id == node || (node.find('@') == std::string::npos && base_id(id) == node);
}

// A NodeOutput line: "fix[2] #1 stdout  text" (the line's end dropped).
std::string output_line(const event& ev) {
  std::string text = ev.fields.value("text", std::string{});
  if (!text.empty() && text.back() == '\n') text.pop_back();
  std::string who = ev.fields.value("node_id", std::string{"?"});
  if (ev.fields.value("iteration", std::int64_t{0}) != 0)
    who += "[" + std::to_string(ev.fields.value("iteration", std::int64_t{0})) + "]";
  who += " #" + std::to_string(ev.fields.value("attempt", std::int64_t{0}));
  return shown(who) + " " + pad(ev.fields.value("stream", std::string{"?"}), 7) + shown(text);
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
  return run_store::open_for(db_path, run_id).inspect(run_id);
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
    std::vector<run_info> runs;
    std::size_t total = 0;
    if (auto store = run_store::open_existing(g.db)) {
      runs = store->runs(*status, limit == 0 ? static_cast<std::size_t>(-1) : limit);
      total = runs.size() < limit || limit == 0 ? runs.size() : store->run_count(*status);
    }
    if (g.json()) {
      json list = json::array();
      for (const auto& r : runs)
        list.push_back(r.to_json());
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
    if (!j["waiting"].empty()) {
      j["continue_with"] = continue_commands(g, *inspect_id, j["waiting"]);
      j["resume"] = smithers_command(g) + " resume " + shell_word(*inspect_id);
    }
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
    if (j["lineage"].contains("continued_from"))
      std::cout << "continues " << shown(j["lineage"]["continued_from"].get<std::string>()) << "\n";
    if (j["lineage"].contains("continued_as"))
      std::cout << "continued " << shown(j["lineage"]["continued_as"].get<std::string>()) << "\n";
    std::cout << "input     " << shown_json(r["input"]) << "\n\nNODES\n";
    // A node in a loop is named with its iteration: "review@2" (and, in
    // nested loops, the outer ones': "fix@1@0").
    auto key_of = [](const json& row) {
      return to_string(node_key{row["node_id"].get<std::string>(),
                                row["iteration"].get<std::int64_t>()});
    };
    std::size_t id_width = 24;
    for (const auto& n : j["nodes"])
      id_width = std::max(id_width, display_width(key_of(n)) + 2);
    for (const auto& n : j["nodes"]) {
      std::cout << "  " << pad(shown(key_of(n)), id_width) << pad(n["state"].get<std::string>(), 18)
                << pad(n["kind"].get<std::string>(), 9) << n["attempts"].get<std::int64_t>()
                << " attempt(s)";
      if (!n["label"].get<std::string>().empty())
        std::cout << "  \"" << shown(n["label"].get<std::string>()) << "\"";
      std::cout << "\n";
    }
    std::cout << "\nATTEMPTS\n";
    for (const auto& a : j["attempts"]) {
      std::cout << "  "
                << pad(shown(key_of(a)) + " #" +
                           std::to_string(a["attempt"].get<std::int64_t>()),
                       id_width + 4)
                << pad(a["state"].get<std::string>(), 13)
                << pad(format_time(a["started_ms"].get<std::int64_t>()), 25)
                << pad(a["duration_ms"].is_null()
                           ? std::string{"-"}
                           : format_duration(a["duration_ms"].get<std::int64_t>()),
                       10);
      if (a["cached"].get<bool>()) std::cout << " cached";
      if (a["worker"].is_string()) std::cout << " on " << shown(a["worker"].get<std::string>());
      if (const auto& ag = a["agent"]; ag.is_object() && ag.contains("id")) {
        std::cout << " agent " << shown_json(ag["id"]);
        if (auto f = ag.value("follow_ups", std::int64_t{0}); f > 0)
          std::cout << " (" << f << " follow-up" << (f == 1 ? "" : "s") << ")";
      }
      if (const auto& w = a["worktree"]; w.is_object() && w.contains("path"))
        std::cout << " in " << shown_json(w["path"]);
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
    if (!j["loops"].empty()) {
      std::cout << "\nLOOPS\n";
      for (const auto& l : j["loops"])
        std::cout << "  " << pad(shown(l["loop_id"].get<std::string>()), id_width)
                  << pad(l["state"].get<std::string>(), 14) << "iteration "
                  << l["iteration"].get<std::int64_t>() << "\n";
    }
    if (!j["waiting"].empty()) {
      std::cout << "\nWAITING\n";
      print_waiting(g, *inspect_id, j["waiting"], std::cout);
    }
    if (!j["inbox"].empty()) {
      std::cout << "\nARRIVED, NOT YET TAKEN\n";
      for (const auto& e : j["inbox"]) {
        if (e["kind"] == "approval")
          std::cout << "  decision for " << shown(key_of(e)) << ": "
                    << (e["decision"].value("approved", false) ? "approved" : "denied");
        else
          std::cout << "  signal \"" << shown(e["name"].get<std::string>())
                    << "\": " << shown_json(e["data"]);
        std::cout << " (" << format_time(e["created_ms"].get<std::int64_t>()) << ")\n";
      }
    }
    result = exit_finished;
  });

  // timeline
  auto tl_id = std::make_shared<std::string>();
  auto* timeline = app.add_subcommand("timeline", "frames and forks of a run");
  timeline->add_option("run_id", *tl_id, "run id")->required();
  timeline->callback([&g, &result, tl_id] {
    auto store = run_store::open_for(g.db, *tl_id);
    auto run = store.get(*tl_id);
    json tl = store.timeline(*tl_id);
    if (g.json()) {
      std::cout << dump(tl, 2) << std::endl;
      result = exit_finished;
      return;
    }
    std::cout << "run " << shown(*tl_id) << " (" << run.status << ")";
    if (!tl["continued_from"].is_null())
      std::cout << ", continues " << shown(tl["continued_from"].get<std::string>());
    else if (!run.parent_run_id.empty() && run.config.is_object() && run.config.contains("fork") &&
             run.config["fork"].is_object())
      std::cout << ", forked from " << shown(run.parent_run_id) << " at frame "
                << run.config["fork"].value("frame_no", std::int64_t{0});
    if (!tl["continued_as"].is_null())
      std::cout << ", continued as " << shown(tl["continued_as"].get<std::string>());
    std::cout << "\n\nFRAMES\n";
    constexpr std::size_t shown_changes = 6;
    for (const auto& f : tl["frames"]) {
      std::cout << "  " << std::setw(5) << f["frame_no"].get<std::int64_t>() << "  "
                << format_time(f["created_ms"].get<std::int64_t>()) << "  "
                << (f["keyframe"].get<bool>() ? "key  " : "delta") << "  " << std::setw(6)
                << f["changes"].get<std::int64_t>() << " node(s)  tree "
                << f["tree_hash"].get<std::string>().substr(0, 12);
      const auto& diff = f["changed"];
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
    if (tl["forks"].empty()) std::cout << "  (none)\n";
    for (const auto& c : tl["forks"])
      std::cout << "  " << pad(shown(c["run_id"].get<std::string>()), 34)
                << pad(c["status"].get<std::string>(), 12) << "from frame "
                << (c["frame_no"].is_number() ? c["frame_no"].get<std::int64_t>() : 0) << "\n";
    result = exit_finished;
  });

  // cancel
  auto cancel_id = std::make_shared<std::string>();
  auto* cancel = app.add_subcommand("cancel", "cancel a run, whoever owns it");
  cancel->add_option("run_id", *cancel_id, "run id")->required();
  cancel->callback([&g, &result, cancel_id] {
    // RUN_NOT_FOUND without creating a database.
    auto store = run_store::open_for(g.db, *cancel_id);
    auto out = store.cancel(*cancel_id, "cancelled by smithers cancel", default_stale_after);
    const auto& run = out.run;
    if (!out.requested) {
      std::string who =
          run.owner_id.empty()
              ? (run.status == "created" ? "no process had started it"
                                         : "no process drove it (it was " + run.status + ")")
              : "the process that drove it (pid " + std::to_string(run.owner_pid) + ") is gone";
      if (g.json())
        std::cout << dump(json{{"run_id", *cancel_id},
                               {"status", "cancelled"},
                               {"cancelled_by", "this command"},
                               {"attempts_cancelled", out.attempts},
                               {"nodes_cancelled", out.nodes}})
                  << std::endl;
      else
        std::cout << "run " << *cancel_id << " cancelled: " << who << "; " << out.attempts
                  << " attempt(s) it left in flight and " << out.nodes
                  << " node(s) that had not ended recorded cancelled\n";
      result = exit_finished;
      return;
    }
    // A live owner stops it: wait a little to say what happened.
    std::string status = run.status;
    auto until = std::chrono::steady_clock::now() + cancel_confirm_wait;
    while (std::chrono::steady_clock::now() < until) {
      if (auto r = store.find(*cancel_id)) status = r->status;
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
    std::string node;
  };
  auto la = std::make_shared<logs_args>();
  auto* logs = app.add_subcommand("logs", "the event stream of a run");
  logs->add_option("run_id", la->run_id, "run id")->required();
  logs->add_flag("-f,--follow", la->follow, "keep printing events until the run ends");
  logs->add_option("--node", la->node,
                   "only the events of this node (its id; inside nested loops, the id without "
                   "@N matches every instance)");
  logs->add_option("--stale-after", la->stale_after,
                   "with -f: a heartbeat this old means the owner on another host is gone "
                   "(default 30s)");
  logs->callback([&g, &result, la] {
    auto stale_after = parse_duration(la->stale_after, "--stale-after");
    std::optional<run_store> store;
    if (la->follow) {
      // `smithers run --run-id X & smithers logs -f X`: the run may not
      // exist yet. Wait for it a little.
      auto until = std::chrono::steady_clock::now() + follow_wait_for_run;
      for (;;) {
        store = run_store::open_existing(g.db);
        if (store && store->find(la->run_id)) break;
        if (std::chrono::steady_clock::now() >= until) break;
        store.reset();
        std::this_thread::sleep_for(follow_poll);
      }
    }
    if (!store) store = run_store::open_for(g.db, la->run_id);
    store->get(la->run_id); // RUN_NOT_FOUND
    std::int64_t last = -1;
    auto print_new = [&] {
      for (const auto& e : store->events(la->run_id, last)) {
        auto ev = event::from_json(e);
        last = ev.seq;
        if (!la->node.empty() && !about_node(ev, la->node)) continue;
        if (g.json())
          std::cout << dump(e) << "\n";
        else if (ev.type == event_type::node_output)
          std::cout << std::setw(6) << ev.seq << "  " << format_time(ev.timestamp_ms) << "  "
                    << pad(ev.type, 21) << output_line(ev) << "\n";
        else
          std::cout << std::setw(6) << ev.seq << "  " << format_time(ev.timestamp_ms) << "  "
                    << pad(ev.type, 21) << shown_json(ev.fields) << "\n";
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
      auto run = store->find(la->run_id);
      if (!run) break; // deleted under us
      auto st = run_status_from(run->status);
      if (st && is_terminal(*st)) {
        // One more read: events committed together with the final status.
        if (store->events(la->run_id, last, 1).empty()) break;
        continue;
      }
      auto driver = driver_of(*run, stale_after);
      // A run let go of while it waits for a person or a signal goes on
      // once that comes (resume, supervise): followed until it ends.
      bool waits = st == run_status::waiting_approval || st == run_status::waiting_event;
      if (driver == run_driver::alive || (driver == run_driver::nobody && waits)) {
        undriven = false;
      } else {
        auto now = std::chrono::steady_clock::now();
        if (!undriven) undriven_since = now;
        undriven = true;
        if (driver == run_driver::gone || now - undriven_since >= follow_unowned_grace) {
          print_new();
          std::string why =
              run->status == "created"
                  ? "has not been started (`smithers resume " + shown(la->run_id) + "` starts it)"
              : driver == run_driver::gone
                  ? "lost the process driving it (pid " + std::to_string(run->owner_pid) +
                        (owned_on_this_host(*run) ? ", is gone"
                                                  : ", on another host, stopped heartbeating") +
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
