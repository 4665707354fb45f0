// Keys of nodes and attempts. A node is an instance of a workflow node in
// one loop iteration: (node_id, iteration), iteration 0 outside loops
// (docs/workflow-format.md, "Iterations"). Everything the engine keeps per
// node — states, attempts, outputs, checkpoints, events, store rows — is
// keyed by it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <tuple>

namespace smithers {

struct node_key {
  std::string id;
  std::int64_t iteration = 0;

  friend bool operator==(const node_key& a, const node_key& b) {
    return a.iteration == b.iteration && a.id == b.id;
  }
  friend bool operator!=(const node_key& a, const node_key& b) { return !(a == b); }
  friend bool operator<(const node_key& a, const node_key& b) {
    return std::tie(a.id, a.iteration) < std::tie(b.id, b.iteration);
  }
};

/// One attempt of a node (attempt 1, 2, ...).
struct attempt_key {
  node_key node;
  std::int64_t attempt = 1;

  friend bool operator==(const attempt_key& a, const attempt_key& b) {
    return a.attempt == b.attempt && a.node == b.node;
  }
  friend bool operator!=(const attempt_key& a, const attempt_key& b) { return !(a == b); }
};

/// "id" for iteration 0, "id@N" otherwise (how messages and logs name a node).
inline std::string to_string(const node_key& k) {
  return k.iteration == 0 ? k.id : k.id + "@" + std::to_string(k.iteration);
}

struct node_key_hash {
  std::size_t operator()(const node_key& k) const noexcept {
    return std::hash<std::string>{}(k.id) ^ (static_cast<std::size_t>(k.iteration) * 0x9e3779b97f4a7c15ULL);
  }
};

} // namespace smithers
