#include "run_driver.hpp"

#include "progress.hpp"
#include "run_report.hpp"

#include <smithers/admin.hpp>

#include <iostream>
#include <memory>
#include <unistd.h>

namespace smithers::cli {

void register_builtin_computes(engine& e) {
  e.register_compute("noop", [](task_context&) { return json::object(); });
  e.register_compute("echo", [](task_context& ctx) {
    return json{{"node_id", ctx.node_id()}, {"input", ctx.input()}, {"needs", ctx.needs()}};
  });
}

bool is_builtin_compute(const std::string& name) {
  return name == "noop" || name == "echo";
}

namespace {

engine_config config_for(const std::string& db_path) {
  engine_config cfg;
  cfg.db_path = db_path;
  return cfg;
}

} // namespace

driving_engine::driving_engine(const std::string& db_path) : eng_{config_for(db_path)} {
  signals_.watch(eng_);
  register_builtin_computes(eng_);
}

int drive(const globals& g, const run_begin& begin) {
  driving_engine d{g.db};
  auto prog = std::make_shared<progress>(!g.json() && ::isatty(STDERR_FILENO));
  event_handler on_event = [prog](const event& e) { prog->on_event(e); };
  auto handle = begin(d.eng(), on_event);
  auto res = handle.wait();
  // Continue-as-new: follow the chain to its last run, each resumed with the
  // workflow file its parent ran (the successor's row names it).
  while (res.status == run_status::continued && !res.continued_as.empty() &&
         d.signals().received() == 0) {
    if (!g.json())
      std::cerr << "run " << shown(res.run_id) << " continued as " << shown(res.continued_as)
                << "\n";
    auto next = run_store::open_for(g.db, res.continued_as).get(res.continued_as);
    if (next.workflow_path.empty()) break; // not from a file: `resume --workflow` drives it
    resume_options opts;
    opts.on_event = on_event;
    opts.release_when_waiting = true;
    handle = resume_from_file(d.eng(), next.run_id, next.workflow_path,
                              load_workflow_or_throw(next.workflow_path), std::move(opts));
    res = handle.wait();
  }
  // A decision or signal that came while the run was being let go of (it
  // could not be taken any more): go on with it here, not at the next
  // resume.
  while ((res.status == run_status::waiting_approval || res.status == run_status::waiting_event) &&
         d.signals().received() == 0) {
    auto store = run_store::open_for(g.db, res.run_id);
    auto run = store.get(res.run_id);
    if (run.workflow_path.empty() || !store.wait_ready(res.run_id)) break;
    resume_options opts;
    opts.on_event = on_event;
    opts.release_when_waiting = true;
    try {
      handle = resume_from_file(d.eng(), run.run_id, run.workflow_path,
                                load_workflow_or_throw(run.workflow_path), std::move(opts));
    } catch (const smithers_error&) {
      break; // taken by another process, or not from this file: resume says
    }
    res = handle.wait();
  }
  d.signals().release();
  prog->done();
  return report_run_end(g, res, d.signals().received());
}

run_handle resume_from_file(engine& eng, const std::string& run_id, const std::string& path,
                            spec::parse_result parsed, resume_options opts) {
  opts.workflow_hash = parsed.hash;
  opts.vcs_revision = git_revision(path);
  return eng.resume(std::make_shared<const workflow>(std::move(*parsed.wf)), run_id,
                    std::move(opts));
}

} // namespace smithers::cli
