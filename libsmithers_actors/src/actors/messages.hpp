// Atoms and message payloads of the engine's actors. CAF lives here and in
// actors/*.cpp only; payloads are shared_ptrs to plain structs that never
// leave the process (remote workers get their own serializable types).
#pragma once

#include "actors/task_job.hpp"
#include "store/writer.hpp"

#include <smithers/events.hpp>

#include <caf/all.hpp>

#include <memory>
#include <vector>

namespace smithers::actors {

using write_atom = caf::atom_constant<caf::atom("write")>;
using committed_atom = caf::atom_constant<caf::atom("committed")>;
using failed_atom = caf::atom_constant<caf::atom("failed")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using result_atom = caf::atom_constant<caf::atom("result")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using heartbeat_atom = caf::atom_constant<caf::atom("heartbeat")>;
using retry_atom = caf::atom_constant<caf::atom("retry")>;
using start_atom = caf::atom_constant<caf::atom("start")>;
using track_atom = caf::atom_constant<caf::atom("track")>;
using untrack_atom = caf::atom_constant<caf::atom("untrack")>;
using check_atom = caf::atom_constant<caf::atom("check")>;
using hb_timeout_atom = caf::atom_constant<caf::atom("hbtimeout")>;
using timeout_atom = caf::atom_constant<caf::atom("timeout")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
using interrupt_atom = caf::atom_constant<caf::atom("interrupt")>;
using handover_atom = caf::atom_constant<caf::atom("handover")>;
using grace_atom = caf::atom_constant<caf::atom("grace")>;
using poll_atom = caf::atom_constant<caf::atom("poll")>;
using load_atom = caf::atom_constant<caf::atom("load")>;
using loaded_atom = caf::atom_constant<caf::atom("loaded")>;
using exec_atom = caf::atom_constant<caf::atom("exec")>;
using process_atom = caf::atom_constant<caf::atom("process")>;

/// Commands committed together, in order, in one transaction.
struct write_batch {
  std::vector<store::command> commands;
};
using write_batch_ptr = std::shared_ptr<write_batch>;

using task_outcome_ptr = std::shared_ptr<task_outcome>;

/// Everything stored about one run, read on the writer's own connection (so
/// it works for ":memory:" too).
struct run_snapshot {
  std::optional<store::run_row> run;
  std::vector<store::node_row> nodes;
  std::vector<store::attempt_row> attempts;
  std::vector<store::output_row> outputs;
  std::int64_t max_seq = -1;
  std::int64_t frames = 0;
  std::string error; // set when reading failed
};
using run_snapshot_ptr = std::shared_ptr<run_snapshot>;

/// Store work run on the writer's connection (e.g. a fork), in its thread.
struct store_job {
  std::function<void(store::database&)> fn;
  std::optional<error> failure;
};
using store_job_ptr = std::shared_ptr<store_job>;

struct heartbeat_msg {
  std::int32_t task_index = 0;
  std::int64_t attempt = 0;
  json data;
  bool has_data = false;
  std::int64_t at_ms = 0;
};
using heartbeat_ptr = std::shared_ptr<heartbeat_msg>;

} // namespace smithers::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(smithers::actors::write_batch_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(smithers::actors::task_outcome_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(smithers::actors::heartbeat_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(smithers::actors::run_snapshot_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(smithers::actors::store_job_ptr)
