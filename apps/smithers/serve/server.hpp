// smithers serve: the runs of a database over HTTP (docs/operations.md,
// "Serving runs over HTTP"): the JSON API, Server-Sent Events that follow
// runs, Prometheus metrics and the dashboard page. Any process may own the
// runs; the server reads the database on connections of its own and acts
// through run_store, as the CLI does.
#pragma once

#include <smithers/remote.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace smithers::serve {

struct server_options {
  std::string db_path = "smithers.db";
  endpoint listen{"127.0.0.1", 7331};
  std::string token; // "" for none (loopback only)
  /// How a user runs smithers on this database ("smithers --db F"): the
  /// start of the command a response suggests when a run needs a resume.
  std::string command = "smithers";
};

class server {
public:
  explicit server(server_options opts);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds the socket; returns the port (the one picked when asked for 0).
  /// INVALID_ARGUMENT when it cannot listen there.
  std::uint16_t bind();
  /// Serves until stop(); returns then.
  void run();
  /// From any thread (a signal watcher): ends the streams and run().
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace smithers::serve
