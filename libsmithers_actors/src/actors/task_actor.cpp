#include "actors/task_actor.hpp"

#include "actors/messages.hpp"
#include "util/clock.hpp"

namespace smithers::actors {

namespace {

caf::behavior task_actor(caf::event_based_actor* self, std::shared_ptr<task_job> job,
                         util::thread_pool* pool, caf::actor supervisor) {
  if (job->spec->kind == task_kind::value) {
    // Nothing blocks: answer right away.
    auto oc = std::make_shared<task_outcome>(execute(*job, nullptr, {}));
    self->send(supervisor, result_atom::value, job->node_id, job->attempt, oc);
    self->quit();
    return {};
  }
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  // Whatever ends this actor (a result, a timeout, a cancel, the supervisor
  // going away) tells the running job to stop.
  self->attach_functor([cancel] { cancel->store(true); });
  auto me = caf::actor_cast<caf::actor>(self);
  pool->submit([job, cancel, me, supervisor] {
    auto beat = [&](json data, bool has_data) {
      auto hb = std::make_shared<heartbeat_msg>();
      hb->task_index = job->task_index;
      hb->attempt = job->attempt;
      hb->data = std::move(data);
      hb->has_data = has_data;
      hb->at_ms = util::now_ms();
      caf::anon_send(supervisor, heartbeat_atom::value, job->node_id, hb);
    };
    auto oc = std::make_shared<task_outcome>(execute(*job, cancel, beat));
    caf::anon_send(me, done_atom::value, oc);
  });
  return {
    [=](done_atom, const task_outcome_ptr& oc) {
      self->send(supervisor, result_atom::value, job->node_id, job->attempt, oc);
      self->quit();
    },
  };
}

} // namespace

caf::actor spawn_task_actor(caf::local_actor& parent, std::shared_ptr<task_job> job,
                            util::thread_pool* pool, caf::actor supervisor) {
  return parent.spawn(task_actor, std::move(job), pool, std::move(supervisor));
}

} // namespace smithers::actors
