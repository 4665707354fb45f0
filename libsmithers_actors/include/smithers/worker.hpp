// A worker node: executes the command tasks and named compute tasks that
// runs' owners elsewhere send it (docs/operations.md, "Workers"). `smithers
// worker` is one with the CLI's built-in computes; a host program builds
// its own to serve its own compute functions. No CAF types appear here.
#pragma once

#include <smithers/remote.hpp>
#include <smithers/task.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace smithers {

struct worker_config {
  /// HOST:PORT to listen on; port 0 picks a free one (see worker::port()).
  /// Without TLS only a loopback address is accepted, unless `insecure`.
  std::string listen = "127.0.0.1:0";
  /// Attempts run at once; 0: the number of cores (at least 2).
  std::int64_t slots = 0;
  /// Mutual TLS: owners must present a certificate signed by `tls.ca`.
  tls_files tls;
  /// Listen on a non-loopback address without TLS: anyone who can reach the
  /// port can run commands as this process.
  bool insecure = false;
  /// CAF scheduler threads; 0: the number of cores, at least 2.
  std::size_t scheduler_threads = 0;
};

class worker {
public:
  /// Checks the configuration (INVALID_ARGUMENT: a bad address, a
  /// non-loopback one without TLS or `insecure`, slots out of range, TLS
  /// files that are missing, unreadable or do not fit together).
  explicit worker(worker_config cfg);
  /// Stops (as stop()).
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  /// Makes `name` runnable by owners' {"compute": "name"} tasks. Before start().
  void register_compute(const std::string& name, compute_fn fn);

  /// Listens; returns the port. Throws INVALID_ARGUMENT when it cannot
  /// (the port is taken, the address is not this host's).
  std::uint16_t start();
  std::uint16_t port() const;
  /// Stops listening and ends every attempt in flight (their processes
  /// included). Idempotent.
  void stop();

  const worker_config& config() const;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace smithers
