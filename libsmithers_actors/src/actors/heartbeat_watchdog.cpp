#include "actors/heartbeat_watchdog.hpp"

#include "actors/protocol.hpp"
#include "util/clock.hpp"

#include <unordered_map>

namespace smithers::actors {

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds write_interval{500};
constexpr milliseconds check_interval{100};
constexpr milliseconds liveness_interval{1000};
// A heartbeat that arrives before its attempt is tracked (or after it ended)
// is forgotten after this long.
constexpr milliseconds untracked_ttl{10000};

struct watched {
  std::int64_t attempt = 0;
  bool tracked = false;
  caf::actor task;             // its task actor; none for a pool attempt
  std::int64_t timeout_ms = 0; // 0: no heartbeat timeout
  clock_type::time_point last_beat{};
  std::int64_t last_beat_ms = 0; // wall clock of the newest heartbeat (or the start)
  clock_type::time_point last_write{};
  bool written = false;
  std::optional<heartbeat_msg> pending;
  clock_type::time_point created{};
};

struct watchdog_state {
  std::string run_id;
  std::string owner_id;
  caf::actor supervisor;
  caf::actor persistence;
  std::unordered_map<node_key, watched, node_key_hash> attempts;
  clock_type::time_point last_liveness{};
  std::uint64_t next_batch = 1;
  static inline const char* name = "smithers.heartbeat_watchdog";
};

using wd_actor = caf::stateful_actor<watchdog_state>;

watched& entry_for(wd_actor* self, const node_key& k, std::int64_t attempt) {
  auto& w = self->state.attempts[k];
  if (w.attempt != attempt) {
    auto now = clock_type::now();
    w = watched{};
    w.attempt = attempt;
    w.last_beat = now;
    w.last_beat_ms = util::now_ms();
    w.created = now;
  }
  return w;
}

void write(wd_actor* self, watched& w, heartbeat_msg hb) {
  w.last_write = clock_type::now();
  w.written = true;
  w.pending.reset();
  self->send(self->state.supervisor, heartbeat_atom::value,
             std::make_shared<heartbeat_msg>(std::move(hb)));
}

void check(wd_actor* self) {
  auto& st = self->state;
  auto now = clock_type::now();
  for (auto it = st.attempts.begin(); it != st.attempts.end();) {
    auto& [k, w] = *it;
    if (w.pending && now - w.last_write >= write_interval) write(self, w, *w.pending);
    if (!w.tracked) {
      // Heartbeats of an attempt that is not (or no longer) tracked.
      it = now - w.created > untracked_ttl ? st.attempts.erase(it) : std::next(it);
      continue;
    }
    if (w.timeout_ms > 0 && now - w.last_beat > milliseconds{w.timeout_ms}) {
      if (w.pending) write(self, w, *w.pending);
      // The supervisor hears of the timeout before the task actor's down_msg
      // (this send happens before the exit), so it records the cause.
      self->send(st.supervisor, hb_timeout_atom::value, attempt_key{k, w.attempt}, w.last_beat_ms);
      // A pool attempt is told to stop by the supervisor (its attempt ended).
      if (w.task) self->send_exit(w.task, caf::exit_reason::user_shutdown);
      it = st.attempts.erase(it);
      continue;
    }
    ++it;
  }
  if (now - st.last_liveness >= liveness_interval) {
    st.last_liveness = now;
    auto batch = std::make_shared<write_batch>();
    batch->commands.push_back(store::touch_run{st.run_id, st.owner_id, util::now_ms()});
    self->send(st.persistence, write_atom::value, st.next_batch++, batch);
  }
  self->delayed_send(self, check_interval, check_atom::value);
}

caf::behavior watchdog(wd_actor* self, caf::actor supervisor, std::string run_id,
                       std::string owner_id, caf::actor persistence) {
  self->state.supervisor = std::move(supervisor);
  self->state.run_id = std::move(run_id);
  self->state.owner_id = std::move(owner_id);
  self->state.persistence = std::move(persistence);
  self->send(self, check_atom::value);
  return {
      [=](track_atom, const attempt_key& a, const caf::actor& task, std::int64_t timeout_ms) {
        auto& w = entry_for(self, a.node, a.attempt);
        w.tracked = true;
        w.task = task;
        // Armed now (a remote attempt, once a worker took it): silence
        // counts from here.
        if (timeout_ms > 0 && w.timeout_ms == 0) w.last_beat = clock_type::now();
        w.timeout_ms = timeout_ms;
      },
      [=](untrack_atom, const attempt_key& a) {
        auto it = self->state.attempts.find(a.node);
        if (it != self->state.attempts.end() && it->second.attempt <= a.attempt)
          self->state.attempts.erase(it);
      },
      [=](heartbeat_atom, const heartbeat_ptr& hb) {
        auto it = self->state.attempts.find(hb->key.node);
        if (it != self->state.attempts.end() && it->second.attempt > hb->key.attempt)
          return; // a late heartbeat of an earlier attempt
        auto& w = entry_for(self, hb->key.node, hb->key.attempt);
        w.last_beat = clock_type::now();
        w.last_beat_ms = hb->at_ms;
        if (!w.written || clock_type::now() - w.last_write >= write_interval) {
          write(self, w, *hb);
        } else if (!w.pending || hb->has_data || !w.pending->has_data) {
          w.pending = *hb; // newest wins, but keep data over a bare beat
        } else {
          w.pending->at_ms = hb->at_ms;
        }
      },
      [=](check_atom) { check(self); },
      // Acks of the liveness writes: nothing to do either way.
      [=](committed_atom, std::uint64_t) {},
      [=](failed_atom, std::uint64_t, const std::string&, const std::string&) {},
  };
}

} // namespace

caf::actor spawn_heartbeat_watchdog(caf::local_actor& supervisor, std::string run_id,
                                    std::string owner_id, caf::actor persistence) {
  return supervisor.spawn<caf::linked>(watchdog, caf::actor_cast<caf::actor>(&supervisor),
                                       std::move(run_id), std::move(owner_id),
                                       std::move(persistence));
}

} // namespace smithers::actors
