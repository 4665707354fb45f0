// A rendered tree compiled for scheduling: flat arrays of nodes and tasks,
// needs resolved to indices. Pure: no I/O, no actors.
#pragma once

#include <smithers/workflow.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace smithers::sched {

using index = std::int32_t;

struct plan_node {
  node_kind kind = node_kind::sequence;
  index parent = -1;
  index position = 0; // index among the parent's children
  std::vector<index> children;
  std::int64_t max_concurrency = 0; // 0: unlimited
  index task = -1;                  // task index for task nodes
};

struct plan {
  std::vector<plan_node> nodes; // nodes[0] is the root
  std::vector<index> task_node; // task index -> node index
  std::vector<std::string> task_ids;
  std::vector<std::shared_ptr<task_spec>> specs;
  std::unordered_map<std::string, index> by_id;
  std::vector<std::vector<index>> needs;      // task -> tasks it needs
  std::vector<std::vector<index>> dependents; // task -> tasks that need it

  std::size_t task_count() const { return task_ids.size(); }
  index find(const std::string& id) const {
    auto it = by_id.find(id);
    return it == by_id.end() ? -1 : it->second;
  }
};

/// Compiles a validated tree (unique task ids, needs name tasks).
plan compile(const node& root);

} // namespace smithers::sched
