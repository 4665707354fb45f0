// The worker protocol: what crosses between a run's owner (its engine's
// worker pool, actors/worker_pool.cpp) and a worker node (actors/
// worker_node.cpp) over CAF's middleman (docs/architecture.md, "The worker
// protocol"). Included by those two files only: it pulls in caf-io.
//
// owner -> worker  (hello, owner_id, pool actor)  request, answered with a
//                                                 worker_info; the worker
//                                                 monitors the pool actor
//                  (rwork, remote_work)           tasks to start, attempts to
//                                                 stop (batched)
// worker -> owner  (rreport, remote_report)       results, heartbeats, process
//                                                 groups started (batched)
//
// An attempt is named on the wire by its ticket, a number the owner's pool
// gives it (unique within the owner process). JSON travels as text and is
// parsed back with the engine's bounds: a peer's data is input like any
// other. Every type here is registered on both ends (register_wire_types).
#pragma once

#include "actors/protocol.hpp"

#include <smithers/remote.hpp>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace smithers::actors {

using hello_atom = caf::atom_constant<caf::atom("hello")>;
using rwork_atom = caf::atom_constant<caf::atom("rwork")>;
using rreport_atom = caf::atom_constant<caf::atom("rreport")>;

struct remote_task {
  std::uint64_t ticket = 0;
  executors::task_request req;
};

struct remote_cancel {
  std::uint64_t ticket = 0;
  std::string code;
  std::string message;
};

struct remote_work {
  std::vector<remote_task> tasks;
  std::vector<remote_cancel> cancels;
};

/// How an attempt ended on a worker: a task_outcome without shared parts.
struct remote_result {
  std::uint64_t ticket = 0;
  bool ok = false;
  std::string output; // JSON text when ok
  std::string code;   // the error otherwise
  std::string message;
  std::string details = "{}";
  std::int64_t beat_at_ms = 0; // the attempt's newest heartbeat (0: none)
  std::string beat_data = "null";
  bool beat_has_data = false;
  std::string meta = "null"; // the outcome's meta (JSON text)
};

struct remote_beat {
  std::uint64_t ticket = 0;
  std::int64_t at_ms = 0;
  std::string data = "null";
  bool has_data = false;
};

/// A command's process group started on the worker's host.
struct remote_proc {
  std::uint64_t ticket = 0;
  std::int64_t pid = 0;
  std::string host;
  std::int64_t pid_start = 0;
};

/// A line an attempt printed, or an agent's follow-up (stream "agent").
struct remote_output {
  std::uint64_t ticket = 0;
  std::string stream;
  std::string text;
};

struct remote_report {
  std::vector<remote_result> done;
  std::vector<remote_beat> beats;
  std::vector<remote_proc> procs;
  std::vector<remote_output> outputs; // in order; before `done` of the same ticket
};

/// A worker's answer to hello.
struct worker_info {
  std::string host;
  std::int64_t pid = 0;
  std::int64_t slots = 0;
  std::vector<std::string> computes; // the functions it runs by name
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, remote_task& x) {
  return f(caf::meta::type_name("remote_task"), x.ticket, x.req);
}
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, remote_cancel& x) {
  return f(caf::meta::type_name("remote_cancel"), x.ticket, x.code, x.message);
}
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, remote_work& x) {
  return f(caf::meta::type_name("remote_work"), x.tasks, x.cancels);
}
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, remote_result& x) {
  return f(caf::meta::type_name("remote_result"), x.ticket, x.ok, x.output, x.code, x.message,
           x.details, x.beat_at_ms, x.beat_data, x.beat_has_data, x.meta);
}
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, remote_beat& x) {
  return f(caf::meta::type_name("remote_beat"), x.ticket, x.at_ms, x.data, x.has_data);
}
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, remote_proc& x) {
  return f(caf::meta::type_name("remote_proc"), x.ticket, x.pid, x.host, x.pid_start);
}
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, remote_output& x) {
  return f(caf::meta::type_name("remote_output"), x.ticket, x.stream, x.text);
}
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, remote_report& x) {
  return f(caf::meta::type_name("remote_report"), x.done, x.beats, x.procs, x.outputs);
}
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, worker_info& x) {
  return f(caf::meta::type_name("worker_info"), x.host, x.pid, x.slots, x.computes);
}

/// Registers every type above (and the nested ones) with `cfg`; both ends
/// call it.
void register_wire_types(caf::actor_system_config& cfg);

/// Loads the middleman (and, with TLS files, CAF's OpenSSL manager with
/// them) and switches on middleman heartbeats, so that a peer that hangs or
/// whose network is gone is noticed within network_timeout (CAF's defaults
/// are off: only TCP would notice, minutes later).
void configure_network(caf::actor_system_config& cfg, const tls_files& tls);

/// The middleman actor to connect and publish through: CAF's OpenSSL one
/// when TLS is configured.
caf::io::middleman_actor network_handle(caf::actor_system& sys, bool tls);

/// How often each end tells the other it is alive, and how long silence
/// means the peer is lost.
inline constexpr std::chrono::milliseconds heartbeat_interval{500};
inline constexpr std::chrono::milliseconds network_timeout{2000};

} // namespace smithers::actors
