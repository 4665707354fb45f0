// The persistence actor: owns the only write connection to the database and
// commits every queued batch in one transaction (group commit).
//
// Protocol: (write_atom, uint64 batch_id, write_batch_ptr) from any actor;
// after the commit that contains it the sender gets (committed_atom, batch_id),
// or (failed_atom, batch_id, std::string code, std::string message) if that
// transaction failed (code: DB_ERROR, or the refusal of a command such as
// RUN_RESUME_CLAIM_FAILED).
// (load_atom, run_id) is answered with (loaded_atom, run_snapshot_ptr);
// (exec_atom, store_job_ptr) runs the job on the connection and answers
// (done_atom, store_job_ptr).
#pragma once

#include "store/database.hpp"
#include "store/writer.hpp"

#include <caf/fwd.hpp>

#include <memory>

namespace smithers {
class metrics;
}

namespace smithers::actors {

/// `m` (may be null) is told of every commit: its size and how long it took.
/// `w`: a writer already made on `db` (its statements prepared), or null.
caf::actor spawn_persistence(caf::actor_system& sys, std::shared_ptr<store::database> db,
                             std::shared_ptr<metrics> m = nullptr,
                             std::unique_ptr<store::writer> w = nullptr);

} // namespace smithers::actors
