#include "scheduler/scheduler.hpp"

#include <limits>

namespace smithers::sched {

const char* to_string(outcome o) {
  switch (o) {
  case outcome::running:
    return "running";
  case outcome::finished:
    return "finished";
  case outcome::failed:
    return "failed";
  case outcome::stuck:
    return "stuck";
  }
  return "?";
}

scheduler::scheduler(const plan& p, std::int64_t run_max_concurrency,
                     std::vector<node_state> initial)
    : plan_(p), run_max_(run_max_concurrency) {
  const auto nn = p.nodes.size();
  const auto nt = p.task_count();
  state_.assign(nt, node_state::pending);
  unmet_.assign(nt, 0);
  active_.assign(nn, 0);
  complete_.assign(nn, 0);
  done_children_.assign(nn, 0);
  cursor_.assign(nn, 0);
  runnable_.assign(nn, 0);
  flying_.assign(nn, 0);
  ready_children_.resize(nn);
  is_runnable_.assign(nt, 0);
  held_.assign(nt, 0);
  counts_[static_cast<int>(node_state::pending)] = nt;

  for (index t = 0; t < static_cast<index>(nt); ++t) {
    node_state s = t < static_cast<index>(initial.size()) ? initial[t] : node_state::pending;
    // Only these states mean something to scheduling; waiting-* states of
    // later node kinds behave like pending until those kinds exist.
    if (s == node_state::cancelled) s = node_state::pending;
    set_state(t, s);
    if (s == node_state::in_progress) flight(t, +1);
    if (s == node_state::failed && !done_state(t, s)) failed_.push_back(t);
  }
  for (index t = 0; t < static_cast<index>(nt); ++t)
    for (index d : p.needs[t])
      if (state_[d] != node_state::finished) ++unmet_[t];
  // Pending tasks whose needs already ended without output are skipped,
  // transitively.
  std::vector<index> seeds;
  for (index t = 0; t < static_cast<index>(nt); ++t)
    if (state_[t] == node_state::skipped ||
        (state_[t] == node_state::failed && done_state(t, state_[t])))
      seeds.push_back(t);
  while (!seeds.empty()) {
    index cur = seeds.back();
    seeds.pop_back();
    for (index d : p.dependents[cur]) {
      if (state_[d] != node_state::pending) continue;
      set_state(d, node_state::skipped);
      auto_skipped_.push_back(d);
      seeds.push_back(d);
    }
  }
  // Completion bottom-up: children have higher indices than their parents.
  for (index n = static_cast<index>(nn); n-- > 0;) {
    const plan_node& pn = p.nodes[n];
    if (pn.task >= 0) {
      complete_[n] = done_state(pn.task, state_[pn.task]);
    } else {
      std::int32_t done = 0;
      for (index c : pn.children)
        done += complete_[c] ? 1 : 0;
      done_children_[n] = done;
      // An undecided branch or for_each (no children until a render
      // decides it) is never done: what comes after it waits.
      bool all = done == static_cast<std::int32_t>(pn.children.size());
      complete_[n] = pn.kind != node_kind::branch && pn.kind != node_kind::for_each && all;
      if (pn.loop >= 0 && all && !p.loops[static_cast<std::size_t>(pn.loop)].done) {
        complete_[n] = 0;
        loops_ready_.push_back(pn.loop);
      }
      if (pn.kind == node_kind::sequence) {
        std::int32_t c = 0;
        while (c < static_cast<std::int32_t>(pn.children.size()) && complete_[pn.children[c]])
          ++c;
        cursor_[n] = c;
      }
    }
  }
  if (!p.nodes.empty() && !complete_[0]) activate(0);
}

bool scheduler::done_state(index t, node_state s) const {
  switch (s) {
  case node_state::finished:
  case node_state::skipped:
    return true;
  case node_state::failed:
    return plan_.specs[t] && plan_.specs[t]->continue_on_fail;
  default:
    return false;
  }
}

void scheduler::set_state(index t, node_state s) {
  --counts_[static_cast<int>(state_[t])];
  state_[t] = s;
  ++counts_[static_cast<int>(s)];
}

void scheduler::activate(index n) {
  // Iterative: a parallel group may hold 100,000 tasks.
  std::vector<index> stack{n};
  while (!stack.empty()) {
    index cur = stack.back();
    stack.pop_back();
    if (active_[cur] || complete_[cur]) continue;
    active_[cur] = 1;
    const plan_node& pn = plan_.nodes[cur];
    if (pn.task >= 0) {
      if (state_[pn.task] == node_state::pending && unmet_[pn.task] == 0) mark_runnable(pn.task);
    } else if (pn.kind == node_kind::parallel) {
      for (auto it = pn.children.rbegin(); it != pn.children.rend(); ++it)
        stack.push_back(*it);
    } else if (cursor_[cur] < static_cast<std::int32_t>(pn.children.size())) {
      stack.push_back(pn.children[cursor_[cur]]);
    }
  }
}

void scheduler::adjust_runnable(index n, int delta) {
  while (n >= 0) {
    std::int32_t before = runnable_[n];
    runnable_[n] += delta;
    index parent = plan_.nodes[n].parent;
    if (parent < 0) break;
    if (before == 0 && runnable_[n] > 0)
      ready_children_[parent].insert(plan_.nodes[n].position);
    else if (before > 0 && runnable_[n] == 0)
      ready_children_[parent].erase(plan_.nodes[n].position);
    n = parent;
  }
}

void scheduler::mark_runnable(index t) {
  if (is_runnable_[t] || held_[t]) return;
  is_runnable_[t] = 1;
  adjust_runnable(plan_.task_node[t], +1);
}

void scheduler::unmark_runnable(index t) {
  if (!is_runnable_[t]) return;
  is_runnable_[t] = 0;
  adjust_runnable(plan_.task_node[t], -1);
}

void scheduler::flight(index t, int delta) {
  in_flight_ += delta;
  for (index n = plan_.task_node[t]; n >= 0; n = plan_.nodes[n].parent)
    flying_[n] += delta;
}

std::size_t scheduler::pull(index n, std::size_t budget, std::vector<index>& out) {
  if (budget == 0 || runnable_[n] == 0) return 0;
  const plan_node& pn = plan_.nodes[n];
  if (pn.task >= 0) {
    index t = pn.task;
    unmark_runnable(t);
    set_state(t, node_state::in_progress);
    flight(t, +1);
    out.push_back(t);
    return 1;
  }
  if (pn.max_concurrency > 0) {
    auto room = pn.max_concurrency - flying_[n];
    if (room <= 0) return 0;
    budget = std::min<std::size_t>(budget, static_cast<std::size_t>(room));
  }
  std::size_t started = 0;
  auto& ready = ready_children_[n];
  auto it = ready.begin();
  while (it != ready.end() && started < budget) {
    index child = pn.children[*it];
    ++it; // pulling may erase the current position
    started += pull(child, budget - started, out);
  }
  return started;
}

std::vector<index> scheduler::take_runnable() {
  std::vector<index> out;
  if (!failed_.empty() || plan_.nodes.empty()) return out;
  std::size_t budget = std::numeric_limits<std::size_t>::max();
  if (run_max_ > 0) {
    if (static_cast<std::int64_t>(in_flight_) >= run_max_) return out;
    budget = static_cast<std::size_t>(run_max_ - static_cast<std::int64_t>(in_flight_));
  }
  pull(0, budget, out);
  return out;
}

void scheduler::node_done(index n) {
  while (n >= 0 && !complete_[n]) {
    complete_[n] = 1;
    index parent = plan_.nodes[n].parent;
    if (parent < 0) return;
    const plan_node& pp = plan_.nodes[parent];
    ++done_children_[parent];
    if (pp.kind == node_kind::sequence) {
      auto& c = cursor_[parent];
      bool advanced = false;
      while (c < static_cast<std::int32_t>(pp.children.size()) && complete_[pp.children[c]]) {
        ++c;
        advanced = true;
      }
      if (advanced && c < static_cast<std::int32_t>(pp.children.size()) && active_[parent])
        activate(pp.children[c]);
    }
    if (done_children_[parent] != static_cast<std::int32_t>(pp.children.size())) return;
    if (pp.loop >= 0 && !plan_.loops[static_cast<std::size_t>(pp.loop)].done) {
      loops_ready_.push_back(pp.loop); // its iteration is over, the loop is not
      return;
    }
    n = parent;
  }
}

void scheduler::skip_dependents(index t) {
  std::vector<index> stack{t};
  while (!stack.empty()) {
    index cur = stack.back();
    stack.pop_back();
    for (index d : plan_.dependents[cur]) {
      if (state_[d] != node_state::pending) continue;
      unmark_runnable(d);
      set_state(d, node_state::skipped);
      auto_skipped_.push_back(d);
      node_done(plan_.task_node[d]);
      stack.push_back(d);
    }
  }
}

void scheduler::task_ended(index t, node_state s) {
  set_state(t, s);
  if (s == node_state::finished) {
    for (index d : plan_.dependents[t]) {
      if (--unmet_[d] == 0 && state_[d] == node_state::pending && active_[plan_.task_node[d]])
        mark_runnable(d);
    }
  } else if (done_state(t, s)) {
    skip_dependents(t);
  }
  if (done_state(t, s))
    node_done(plan_.task_node[t]);
  else if (s == node_state::failed)
    failed_.push_back(t);
  // cancelled: neither done nor failed; the run is being cancelled.
}

void scheduler::complete(index t, node_state s) {
  if (state_[t] == node_state::in_progress) flight(t, -1);
  task_ended(t, s);
}

void scheduler::skip(index t) {
  if (state_[t] != node_state::pending) return;
  unmark_runnable(t);
  task_ended(t, node_state::skipped);
}

void scheduler::defer(index t) {
  if (state_[t] != node_state::in_progress) return;
  flight(t, -1);
  set_state(t, node_state::pending);
  held_[t] = 1;
  ++deferred_;
}

void scheduler::hold(index t) {
  if (state_[t] != node_state::pending || held_[t]) return;
  unmark_runnable(t);
  held_[t] = 1;
  ++deferred_;
}

void scheduler::release(index t) {
  if (!held_[t]) return;
  held_[t] = 0;
  --deferred_;
  if (state_[t] == node_state::pending && unmet_[t] == 0 && active_[plan_.task_node[t]])
    mark_runnable(t);
}

std::vector<index> scheduler::take_auto_skipped() {
  std::vector<index> out;
  out.swap(auto_skipped_);
  return out;
}

std::vector<index> scheduler::take_loops_ready() {
  std::vector<index> out;
  out.swap(loops_ready_);
  return out;
}

outcome scheduler::status() const {
  if (plan_.nodes.empty() || complete_[0]) return outcome::finished;
  if (in_flight_ > 0 || !loops_ready_.empty()) return outcome::running;
  if (!failed_.empty()) return outcome::failed;
  if (runnable_[0] > 0 || deferred_ > 0) return outcome::running;
  return outcome::stuck;
}

std::vector<index> scheduler::blocked_tasks() const {
  std::vector<index> out;
  for (index t = 0; t < static_cast<index>(state_.size()); ++t)
    if (state_[t] == node_state::pending && unmet_[t] > 0) out.push_back(t);
  return out;
}

} // namespace smithers::sched
