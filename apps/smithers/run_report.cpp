#include "run_report.hpp"

#include "signals.hpp"

#include <iostream>

namespace smithers::cli {

json inspect_json(const std::string& db_path, const std::string& run_id);

namespace {

void print_result(const globals& g, const run_result& res) {
  if (g.json()) {
    std::cout << dump(inspect_json(g.db, res.run_id), 2) << std::endl;
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
