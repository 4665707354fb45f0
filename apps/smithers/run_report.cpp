#include "run_report.hpp"

#include "signals.hpp"

#include <iostream>

namespace smithers::cli {

json inspect_json(const std::string& db_path, const std::string& run_id);

void print_waiting(const globals& g, const std::string& run_id, const json& waiting,
                   std::ostream& out) {
  json cmds = continue_commands(g, run_id, waiting);
  for (std::size_t i = 0; i < waiting.size(); ++i) {
    const json& w = waiting[i];
    std::string key = to_string(
        node_key{w.value("node_id", std::string{}), w.value("iteration", std::int64_t{0})});
    std::string kind = w.value("kind", std::string{});
    out << "  " << shown(key) << " waits for ";
    if (kind == "approval") {
      out << (w.value("gate", false) ? "approval before it runs" : "approval");
      std::string title = w.value("title", std::string{});
      if (!title.empty()) out << ": " << shown(title);
    } else if (kind == "signal") {
      out << "signal \"" << shown(w.value("name", std::string{})) << "\"";
    } else {
      out << "its timer";
    }
    if (w.contains("deadline_ms") && w["deadline_ms"].is_number_integer())
      out << (kind == "timer" ? " (fires at " : " (times out at ")
          << format_time(w["deadline_ms"].get<std::int64_t>()) << " UTC)";
    out << "\n";
    for (const auto& c : cmds[i])
      out << "    " << shown(c.get<std::string>()) << "\n";
  }
  out << "  then: " << shown(smithers_command(g) + " resume " + shell_word(run_id))
      << "  (or let `smithers supervise` continue it)\n";
}

namespace {

bool waiting(run_status s) {
  return s == run_status::waiting_approval || s == run_status::waiting_event ||
         s == run_status::waiting_timer;
}

void print_result(const globals& g, const run_result& res) {
  if (g.json()) {
    json j = inspect_json(g.db, res.run_id);
    if (waiting(res.status)) {
      j["continue_with"] = continue_commands(g, res.run_id, j["waiting"]);
      j["resume"] = smithers_command(g) + " resume " + shell_word(res.run_id);
    }
    std::cout << dump(j, 2) << std::endl;
    return;
  }
  if (waiting(res.status)) {
    std::cout << "run " << shown(res.run_id) << " " << to_string(res.status) << "\n";
    print_waiting(g, res.run_id, inspect_json(g.db, res.run_id)["waiting"], std::cout);
    return;
  }
  std::cout << "run " << shown(res.run_id) << " " << to_string(res.status);
  if (!res.continued_as.empty()) std::cout << " as " << shown(res.continued_as);
  if (res.err) std::cout << ": " << res.err->code << ": " << shown(res.err->message);
  std::cout << "\n";
  for (const auto& [id, out] : res.outputs)
    std::cout << "  " << shown(id) << ": " << shown_json(out) << "\n";
}

} // namespace

int report_run_end(const globals& g, const run_result& res, int signal) {
  if (signal != 0 && res.status == run_status::running) {
    std::cerr << "run " << res.run_id << " interrupted by " << signal_guard::signal_name(signal)
              << "; its attempts in flight were stopped; `smithers resume " << res.run_id
              << "` continues it\n";
    return 128 + signal;
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

} // namespace smithers::cli
