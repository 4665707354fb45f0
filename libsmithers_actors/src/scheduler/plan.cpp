#include "scheduler/plan.hpp"

namespace smithers::sched {

plan compile(const node& root) {
  plan p;
  // Iterative walk: deep trees (long sequences of groups) must not overflow.
  struct item {
    const node* n;
    index parent;
    index position;
    bool in_loop;
  };
  std::vector<item> stack{{&root, -1, 0, false}};
  while (!stack.empty()) {
    item it = stack.back();
    stack.pop_back();
    index self = static_cast<index>(p.nodes.size());
    p.nodes.emplace_back();
    plan_node& pn = p.nodes.back();
    pn.kind = it.n->kind;
    pn.parent = it.parent;
    pn.position = it.position;
    pn.max_concurrency = it.n->max_concurrency.value_or(0);
    if (it.parent >= 0) p.nodes[it.parent].children.push_back(self);
    if (it.n->is_task()) {
      index t = static_cast<index>(p.keys.size());
      p.nodes[self].task = t;
      p.task_node.push_back(self);
      p.keys.push_back({it.n->id, it.n->iteration});
      p.specs.push_back(it.n->task);
      p.by_id.emplace(it.n->id, t);
      p.in_loop.push_back(it.in_loop ? 1 : 0);
    } else {
      bool in_loop = it.in_loop;
      if (it.n->kind == node_kind::loop) {
        in_loop = true;
        p.nodes[self].loop = static_cast<index>(p.loops.size());
        plan_loop l;
        l.node = self;
        l.id = it.n->id;
        l.iteration = it.n->iteration;
        l.done = it.n->done;
        l.until = it.n->condition;
        l.max_iterations = it.n->max_iterations;
        l.fail_on_max = it.n->fail_on_max;
        l.continue_as_new_every = it.n->continue_as_new_every;
        p.loops.push_back(std::move(l));
      }
      p.nodes[self].children.reserve(it.n->children.size());
      // Push in reverse so children are numbered in document order.
      for (std::size_t i = it.n->children.size(); i-- > 0;)
        stack.push_back({&it.n->children[i], self, static_cast<index>(i), in_loop});
    }
  }
  p.needs.resize(p.task_count());
  p.dependents.resize(p.task_count());
  for (index t = 0; t < static_cast<index>(p.task_count()); ++t) {
    if (!p.specs[t]) continue;
    for (const auto& id : p.specs[t]->needs) {
      index d = p.find_id(id);
      if (d < 0 || d == t) continue;
      p.needs[t].push_back(d);
      p.dependents[d].push_back(t);
    }
  }
  return p;
}

} // namespace smithers::sched
