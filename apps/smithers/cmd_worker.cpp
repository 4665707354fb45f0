// smithers worker: serve the command tasks and named compute tasks of runs
// driven elsewhere (docs/operations.md, "Workers"), until SIGINT or SIGTERM.
#include "cli.hpp"

#include <smithers/limits.hpp>
#include <smithers/worker.hpp>

#include <csignal>
#include <iostream>
#include <memory>
#include <pthread.h>

namespace smithers::cli {

void add_worker_command(CLI::App& app, const globals& g, int& result) {
  struct worker_args {
    std::string listen;
    std::string slots;
    std::string cert, key, ca;
    bool insecure = false;
  };
  auto a = std::make_shared<worker_args>();
  auto* cmd = app.add_subcommand("worker", "execute tasks for runs driven by other processes");
  cmd->add_option("--listen", a->listen, "HOST:PORT to listen on (port 0: any free port)")
      ->required();
  auto* slots =
      cmd->add_option("--slots", a->slots, "attempts at once (default: cores, at least 2)");
  cmd->add_option("--tls-cert", a->cert, "this worker's certificate (PEM)");
  cmd->add_option("--tls-key", a->key, "this worker's private key (PEM)");
  cmd->add_option("--tls-ca", a->ca, "the CA that signed the owners' certificates");
  cmd->add_flag(
      "--insecure", a->insecure,
      "listen on a non-loopback address without TLS (anyone who reaches it runs commands)");
  cmd->callback([&g, &result, a, slots] {
    worker_config cfg;
    cfg.listen = a->listen;
    if (slots->count() > 0)
      cfg.slots = parse_integer(a->slots, "--slots", 1, limits::max_worker_slots);
    cfg.tls = tls_files{a->cert, a->key, a->ca};
    cfg.insecure = a->insecure;
    // Blocked before the worker starts its threads, taken by sigwait below.
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT})
      sigaddset(&set, sig);
    std::signal(SIGPIPE, SIG_IGN);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    worker w{cfg};
    register_builtin_computes(w);
    auto port = w.start();
    auto ep = parse_endpoint(cfg.listen, "--listen", true);
    ep.port = port;
    if (g.json())
      std::cout << dump(json{{"listening", ep.to_string()},
                             {"port", port},
                             {"slots", w.config().slots},
                             {"tls", cfg.tls.enabled()}})
                << std::endl;
    else
      std::cout << "smithers worker listening on " << ep.to_string() << " (" << w.config().slots
                << " slots, TLS " << (cfg.tls.enabled() ? "on" : "off") << ")" << std::endl;
    int sig = 0;
    sigwait(&set, &sig);
    std::cerr << "smithers worker: stopping (signal " << sig << "), ending attempts in flight\n";
    w.stop();
    result = exit_finished;
  });
}

} // namespace smithers::cli
