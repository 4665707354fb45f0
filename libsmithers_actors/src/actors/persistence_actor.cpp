#include "actors/persistence_actor.hpp"

#include "actors/protocol.hpp"
#include "store/reader.hpp"
#include "store/writer.hpp"

#include <smithers/metrics.hpp>

#include <spdlog/spdlog.h>

#include <chrono>

namespace smithers::actors {

namespace {

struct pending_batch {
  caf::strong_actor_ptr sender;
  std::uint64_t id;
  write_batch_ptr batch;
};

struct persistence_state {
  std::shared_ptr<store::database> db;
  std::unique_ptr<store::writer> writer;
  std::shared_ptr<metrics> counted; // null: not counted
  std::vector<pending_batch> pending;
  bool flush_queued = false;
  static inline const char* name = "smithers.persistence";
};

void reply(caf::stateful_actor<persistence_state>* self, const pending_batch& b,
           const error* failure) {
  if (!b.sender) return;
  auto dest = caf::actor_cast<caf::actor>(b.sender);
  if (failure)
    self->send(dest, failed_atom::value, b.id, failure->code, failure->message);
  else
    self->send(dest, committed_atom::value, b.id);
}

error to_error(const std::exception& e) {
  if (auto* se = dynamic_cast<const smithers_error*>(&e)) return se->err();
  return error{errc::db_error, e.what()};
}

// Applies `commands` batches in one transaction, timed for the metrics.
template <class F> void timed_commit(persistence_state& st, std::size_t commands, F apply) {
  if (!st.counted) return apply();
  auto t0 = std::chrono::steady_clock::now();
  apply();
  st.counted->observe_commit(commands, std::chrono::duration_cast<std::chrono::microseconds>(
                                           std::chrono::steady_clock::now() - t0));
}

// Commits everything that queued up since the last flush as one transaction.
// If that fails, retries each batch alone so one bad batch cannot fail others.
void flush(caf::stateful_actor<persistence_state>* self) {
  auto& st = self->state;
  st.flush_queued = false;
  if (st.pending.empty()) return;
  std::vector<pending_batch> work;
  work.swap(st.pending);
  std::vector<const std::vector<store::command>*> all;
  all.reserve(work.size());
  std::size_t commands = 0;
  for (const auto& b : work) {
    all.push_back(&b.batch->commands);
    commands += b.batch->commands.size();
  }
  try {
    timed_commit(st, commands, [&] { st.writer->apply_all(all); });
    for (const auto& b : work)
      reply(self, b, nullptr);
    return;
  } catch (const std::exception& e) {
    if (work.size() == 1) {
      // The requester decides how bad this is (a duplicate run id is bad
      // input, not a broken store) and reports it.
      auto err = to_error(e);
      spdlog::debug("commit failed: {}", err.what());
      reply(self, work[0], &err);
      return;
    }
    spdlog::warn("group commit of {} batches failed ({}); committing them one by one", work.size(),
                 e.what());
  }
  for (const auto& b : work) {
    try {
      timed_commit(st, b.batch->commands.size(), [&] { st.writer->apply(b.batch->commands); });
      reply(self, b, nullptr);
    } catch (const std::exception& e) {
      auto err = to_error(e);
      spdlog::debug("commit failed: {}", err.what());
      reply(self, b, &err);
    }
  }
}

caf::behavior persistence(caf::stateful_actor<persistence_state>* self,
                          std::shared_ptr<store::database> db, std::shared_ptr<metrics> m,
                          std::shared_ptr<std::unique_ptr<store::writer>> w) {
  self->state.db = std::move(db);
  self->state.counted = std::move(m);
  self->state.writer = w && *w ? std::move(*w) : std::make_unique<store::writer>(*self->state.db);
  return {
      [=](write_atom, std::uint64_t id, const write_batch_ptr& batch) {
        auto& st = self->state;
        st.pending.push_back({self->current_sender(), id, batch});
        // The flush message queues behind everything already in the mailbox,
        // so one transaction takes all of it.
        if (!st.flush_queued) {
          st.flush_queued = true;
          self->send(self, flush_atom::value);
        }
      },
      [=](flush_atom) { flush(self); },
      [=](exec_atom, store_job_ptr job) {
        flush(self);
        try {
          job->fn(*self->state.db);
        } catch (const smithers_error& e) {
          job->failure = e.err();
        } catch (const std::exception& e) {
          job->failure = error{errc::db_error, e.what()};
        }
        self->send(caf::actor_cast<caf::actor>(self->current_sender()), done_atom::value, job);
      },
      [=](load_atom, const std::string& run_id) {
        // Queued writes first: a load sees everything sent before it.
        flush(self);
        auto snap = std::make_shared<run_snapshot>();
        try {
          store::reader rd{*self->state.db};
          snap->run = rd.run(run_id);
          if (snap->run) {
            snap->nodes = rd.nodes(run_id);
            snap->attempts = rd.attempts(run_id);
            snap->outputs = rd.outputs(run_id);
            snap->loops = rd.loops(run_id);
            snap->waits = rd.waits(run_id);
            snap->inbox = rd.open_inbox(run_id);
            snap->max_seq = rd.max_event_seq(run_id);
            snap->frames = rd.frame_count(run_id);
          }
        } catch (const std::exception& e) {
          snap->error = e.what();
        }
        self->send(caf::actor_cast<caf::actor>(self->current_sender()), loaded_atom::value, snap);
      },
  };
}

} // namespace

caf::actor spawn_persistence(caf::actor_system& sys, std::shared_ptr<store::database> db,
                             std::shared_ptr<metrics> m, std::unique_ptr<store::writer> w) {
  // A scheduled actor, not a detached thread: a supervisor's write and the
  // commit's ack then stay on one worker with no thread wake-up in between,
  // which was most of the cost of each step of a sequence. A commit holds
  // its worker only for the commit (WAL with synchronous=NORMAL syncs only
  // at checkpoints); it is one actor, so at most one worker is ever in
  // SQLite, and the other workers steal what queues up behind it.
  // Shared: a spawn's arguments are copied.
  auto given = std::make_shared<std::unique_ptr<store::writer>>(std::move(w));
  return sys.spawn(persistence, std::move(db), std::move(m), std::move(given));
}

} // namespace smithers::actors
