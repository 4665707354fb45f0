// A rendered tree compiled for scheduling: flat arrays of nodes and tasks,
// needs resolved to indices. Pure: no I/O, no actors.
#pragma once

#include <smithers/node_key.hpp>
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
  std::vector<node_key> keys; // task index -> (node id, iteration)
  std::vector<std::shared_ptr<task_spec>> specs;
  std::unordered_map<std::string, index> by_id; // ids are unique within a render
  std::vector<std::vector<index>> needs;      // task -> tasks it needs
  std::vector<std::vector<index>> dependents; // task -> tasks that need it

  std::size_t task_count() const { return keys.size(); }
  /// The task of this id in this render, whatever its iteration (needs).
  index find_id(const std::string& id) const {
    auto it = by_id.find(id);
    return it == by_id.end() ? -1 : it->second;
  }
  /// The task of this key: its id in this render, in that iteration.
  index find(const node_key& k) const {
    index t = find_id(k.id);
    return t >= 0 && keys[static_cast<std::size_t>(t)].iteration == k.iteration ? t : -1;
  }
};

/// Compiles a validated tree (unique task ids, needs name tasks).
plan compile(const node& root);

} // namespace smithers::sched
