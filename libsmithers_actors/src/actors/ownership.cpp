// Ownership: the runs this process drives, the request poller, and what the
// engine does with a request for a run of its own that no supervisor drives.
#include "actors/ownership.hpp"

#include "actors/engine_impl.hpp"
#include "actors/protocol.hpp"
#include "store/cancel.hpp"
#include "store/database.hpp"
#include "store/reader.hpp"
#include "util/clock.hpp"
#include "util/owner.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_set>

namespace smithers {

namespace actors {

namespace {

constexpr std::chrono::milliseconds cancel_poll_interval{250};

std::mutex driven_mtx;
std::set<std::string> driven_runs;

struct poller_state {
  std::unique_ptr<store::database> db;
  std::string db_path;
  std::string owner_id;
  std::function<void(const store::owner_request&)> on_request;
  std::function<bool(const store::inbox_row&)> on_inbox;
  std::unordered_set<std::int64_t> told; // inbox entries a supervisor has (until consumed)
  static inline const char* name = "smithers.request_poller";
};

caf::behavior request_poller(caf::stateful_actor<poller_state>* self, std::string db_path,
                             std::string owner_id,
                             std::function<void(const store::owner_request&)> on_request,
                             std::function<bool(const store::inbox_row&)> on_inbox) {
  self->state.db_path = std::move(db_path);
  self->state.owner_id = std::move(owner_id);
  self->state.on_request = std::move(on_request);
  self->state.on_inbox = std::move(on_inbox);
  self->send(self, poll_atom::value);
  return {
      [=](poll_atom) {
        auto& st = self->state;
        try {
          if (!st.db)
            st.db = std::make_unique<store::database>(
                store::database::open(st.db_path, store::open_mode::read_only));
          store::reader rd{*st.db};
          for (const auto& req : rd.owner_requests(st.owner_id))
            st.on_request(req);
          // Decisions and signals from other processes (this engine's own
          // reach their supervisors directly).
          std::unordered_set<std::int64_t> open;
          for (const auto& e : rd.open_inbox_of_owner(st.owner_id)) {
            open.insert(e.id);
            if (!st.told.count(e.id) && st.on_inbox(e)) st.told.insert(e.id);
          }
          for (auto it = st.told.begin(); it != st.told.end();)
            it = open.count(*it) ? std::next(it) : st.told.erase(it);
        } catch (const std::exception& e) {
          spdlog::warn("polling for requests, decisions and signals failed: {}", e.what());
          st.db.reset();
        }
        self->delayed_send(self, cancel_poll_interval, poll_atom::value);
      },
  };
}

} // namespace

bool driven_here(const std::string& run_id) {
  std::lock_guard<std::mutex> lk(driven_mtx);
  return driven_runs.count(run_id) > 0;
}

bool mark_driven(const std::string& run_id) {
  std::lock_guard<std::mutex> lk(driven_mtx);
  return driven_runs.insert(run_id).second;
}

void set_driven(const std::string& run_id, bool on) {
  std::lock_guard<std::mutex> lk(driven_mtx);
  if (on)
    driven_runs.insert(run_id);
  else
    driven_runs.erase(run_id);
}

caf::actor spawn_request_poller(caf::actor_system& sys, std::string db_path, std::string owner_id,
                                std::function<void(const store::owner_request&)> on_request,
                                std::function<bool(const store::inbox_row&)> on_inbox) {
  return sys.spawn<caf::detached>(request_poller, std::move(db_path), std::move(owner_id),
                                  std::move(on_request), std::move(on_inbox));
}

} // namespace actors

store::unowned_cancel_result engine::impl::cancel_unowned(const std::string& run_id,
                                                          const error& why) {
  store::unowned_cancel req{run_id, owner_id, static_cast<std::int64_t>(::getpid()),
                            util::now_ms(), why};
  store::unowned_cancel_result res;
  store_sync([&](store::database& db) { res = store::cancel_unowned_run(db, req); });
  end_groups(res.process_groups);
  return res;
}

void engine::impl::end_groups(const std::vector<json>& groups) {
  for (const auto& m : groups)
    util::end_orphaned_group(m.value("host", std::string{}), m.value("pgid", std::int64_t{0}),
                             m.value("pgid_start", std::int64_t{0}));
}

// A run being started or resumed here right now is driven, only not yet by
// a supervisor this could tell: the next poll will.
void engine::impl::on_owner_request(const store::owner_request& req) {
  if (req.cancel) {
    if (tell_supervisor(req.run_id, actors::cancel_atom::value, std::string{"cancelled by request"}))
      return;
    // Ours, but no longer driven (interrupted): nobody else will act on it.
    if (actors::driven_here(req.run_id)) return;
    try {
      cancel_unowned(req.run_id, error{errc::run_cancelled, "cancelled by request"});
    } catch (const std::exception& e) {
      spdlog::warn("cancelling run {} on request failed: {}", req.run_id, e.what());
    }
    return;
  }
  if (tell_supervisor(req.run_id, actors::handover_atom::value, req.handover_to)) return;
  if (actors::driven_here(req.run_id)) return;
  try {
    write_sync({store::release_run{req.run_id, owner_id, util::now_ms()}});
  } catch (const std::exception& e) {
    spdlog::warn("releasing run {} to {} failed: {}", req.run_id, req.handover_to, e.what());
  }
}

} // namespace smithers
