#include "run_driver.hpp"

#include "progress.hpp"
#include "run_report.hpp"

#include <smithers/admin.hpp>

#include <iostream>
#include <memory>
#include <unistd.h>

namespace smithers::cli {

bool is_builtin_compute(const std::string& name) {
  return name == "noop" || name == "echo";
}

std::function<bool(const std::string&)> compute_check(const globals& g) {
  if (!g.workers.empty()) return [](const std::string&) { return true; };
  return is_builtin_compute;
}

void add_worker_options(CLI::App* cmd, globals& g) {
  cmd->add_option("--workers", g.workers,
                  "run command and compute tasks on these workers (HOST:PORT,...)")
      ->delimiter(',')
      ->allow_extra_args(false); // `--workers H:P wf.json`: the file is not a worker
  cmd->add_flag("--local-fallback", g.local_fallback,
                "with --workers: run tasks here while no worker is reachable");
  cmd->add_option("--tls-cert", g.tls_cert, "with --workers: this end's certificate (PEM)");
  cmd->add_option("--tls-key", g.tls_key, "with --workers: this end's private key (PEM)");
  cmd->add_option("--tls-ca", g.tls_ca,
                  "with --workers: the CA that signed the workers' certificates");
}

void check_worker_options(const globals& g) {
  if (g.local_fallback && g.workers.empty())
    throw smithers_error(errc::invalid_argument, "--local-fallback needs --workers");
  tls_files tls{g.tls_cert, g.tls_key, g.tls_ca};
  if (tls.enabled() && g.workers.empty())
    throw smithers_error(errc::invalid_argument,
                         "--tls-cert, --tls-key and --tls-ca need --workers");
  for (const auto& w : g.workers)
    parse_endpoint(w, "--workers");
  check_tls_files(tls);
}

namespace {

engine_config config_for(const globals& g) {
  check_worker_options(g);
  engine_config cfg;
  cfg.db_path = g.db;
  cfg.workers = g.workers;
  cfg.local_fallback = g.local_fallback;
  cfg.tls = tls_files{g.tls_cert, g.tls_key, g.tls_ca};
  return cfg;
}

} // namespace

driving_engine::driving_engine(const globals& g) : eng_{config_for(g)} {
  signals_.watch(eng_);
  register_builtin_computes(eng_);
}

int drive(const globals& g, const run_begin& begin) {
  driving_engine d{g};
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
