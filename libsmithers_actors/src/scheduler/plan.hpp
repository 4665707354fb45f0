// A rendered tree compiled for scheduling: flat arrays of nodes and tasks,
// needs resolved to indices. Pure: no I/O, no actors.
#pragma once

#include <smithers/node_key.hpp>
#include <smithers/workflow.hpp>

#include <cstdint>
#include <memory>
#include <optional>
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
  index loop = -1;                  // loop nodes: index into plan::loops
};

/// A loop of the rendered tree: its instance, at its current iteration.
struct plan_loop {
  index node = -1;  // its plan node; the body is its only child
  std::string id;   // the instance ("review", "inner@2")
  std::int64_t iteration = 0;
  bool done = false;
  json until;       // null: never holds
  std::int64_t max_iterations = 5;
  bool fail_on_max = false;
  std::optional<std::int64_t> continue_as_new_every;
};

struct plan {
  std::vector<plan_node> nodes; // nodes[0] is the root
  std::vector<index> task_node; // task index -> node index
  std::vector<node_key> keys; // task index -> (node id, iteration)
  std::vector<std::shared_ptr<task_spec>> specs;
  std::unordered_map<std::string, index> by_id; // ids are unique within a render
  std::vector<std::vector<index>> needs;      // task -> tasks it needs
  std::vector<std::vector<index>> dependents; // task -> tasks that need it
  std::vector<char> in_loop;                  // task -> inside a loop's body
  std::vector<plan_loop> loops;               // in tree order

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
