// smithers serve: the database's runs over HTTP (serve/server.hpp,
// docs/operations.md "Serving runs over HTTP").
#include "cli.hpp"
#include "serve/server.hpp"

#include <smithers/remote.hpp>

#include <csignal>
#include <iostream>
#include <memory>
#include <pthread.h>
#include <thread>

namespace smithers::cli {

void add_serve_command(CLI::App& app, const globals& g, int& result) {
  struct serve_args {
    std::string listen = "127.0.0.1:7331";
    std::string token;
  };
  auto a = std::make_shared<serve_args>();
  auto* cmd =
      app.add_subcommand("serve", "serve the runs over HTTP: API, events, metrics, dashboard");
  cmd->add_option("--listen", a->listen,
                  "HOST:PORT to listen on (default 127.0.0.1:7331; port 0 picks one)");
  auto* token = cmd->add_option("--token", a->token,
                                "require \"Authorization: Bearer TOKEN\" (needed off loopback); "
                                "also read from SMITHERS_TOKEN");
  cmd->callback([&g, &result, a, token] {
    if (auto err = check_db_path(g.db)) throw smithers_error(*err);
    serve::server_options opts;
    opts.db_path = g.db;
    opts.command = smithers_command(g);
    opts.listen = parse_endpoint(a->listen, "--listen", true);
    opts.token = a->token;
    if (token->count() == 0)
      if (const char* env = std::getenv("SMITHERS_TOKEN")) opts.token = env;
    if (token->count() > 0 && opts.token.empty())
      throw smithers_error(errc::invalid_argument, "--token must not be empty");
    if (opts.token.size() > 4096)
      throw smithers_error(errc::invalid_argument, "--token is longer than 4096 bytes");
    for (unsigned char c : opts.token)
      if (c <= 0x20 || c >= 0x7f)
        throw smithers_error(errc::invalid_argument,
                             "--token may hold only printable ASCII without spaces");
    // Anyone who can reach the port could read runs and approve them.
    if (!is_loopback_host(opts.listen.host) && opts.token.empty())
      throw smithers_error(errc::invalid_argument,
                           "--listen " + opts.listen.to_string() +
                               " is not a loopback address: serving there needs --token");

    // Signals are taken by one thread (sigwait), blocked in the server's.
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT})
      sigaddset(&set, sig);
    std::signal(SIGPIPE, SIG_IGN);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    serve::server srv{opts};
    auto port = srv.bind();
    endpoint bound{opts.listen.host, port};
    std::string url = "http://" + bound.to_string() + "/";
    if (g.json())
      std::cout << dump(json{{"url", url}, {"port", port}, {"db", g.db}}) << std::endl;
    else
      std::cout << "serving " << shown(g.db) << " at " << url
                << (opts.token.empty() ? "" : " (token required)") << std::endl;
    std::thread watcher([&srv, set] {
      int sig = 0;
      sigwait(&set, &sig);
      srv.stop();
    });
    srv.run();
    // run() also returns when listening fails; the watcher waits for a signal.
    pthread_kill(watcher.native_handle(), SIGTERM);
    watcher.join();
    result = exit_finished;
  });
}

} // namespace smithers::cli
