// Keys of nodes and attempts. A node is an instance of a workflow node in
// one loop iteration: (node_id, iteration), iteration 0 outside loops
// (docs/workflow-format.md, "Iterations"). Everything the engine keeps per
// node — states, attempts, outputs, checkpoints, events, store rows — is
// keyed by it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
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

/// "id" for iteration 0, "id@N" otherwise: how frames' snapshots, messages
/// and logs name a node. Task ids never contain '@' (they are validated);
/// a node inside nested loops has the outer iterations in its id
/// ("fix@2" in iteration 2 of the outer loop) and is always written with
/// its own ("fix@2@0"), so the form is unambiguous.
inline std::string to_string(const node_key& k) {
  return k.iteration == 0 && k.id.find('@') == std::string::npos
             ? k.id
             : k.id + "@" + std::to_string(k.iteration);
}

/// The key to_string() named, or nullopt for text it cannot have written
/// (an empty id, or a suffix that is not a number up to 10^15).
inline std::optional<node_key> node_key_from_string(std::string_view text) {
  auto at = text.rfind('@');
  if (at == std::string_view::npos)
    return text.empty() ? std::nullopt : std::optional<node_key>{node_key{std::string{text}, 0}};
  std::string_view id = text.substr(0, at);
  std::string_view num = text.substr(at + 1);
  bool nested = id.find('@') != std::string_view::npos;
  if (at == 0 || num.empty() || num.size() > 15) return std::nullopt;
  // "0" is written only for nodes inside nested loops; no leading zeros.
  if (num[0] == '0' && (num.size() > 1 || !nested)) return std::nullopt;
  std::int64_t n = 0;
  for (char c : num) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  return node_key{std::string{id}, n};
}

/// The workflow's id of a node: its key's id without the outer loops'
/// iterations ("fix" for "fix@2").
inline std::string_view base_id(std::string_view id) {
  return id.substr(0, id.find('@'));
}

struct node_key_hash {
  std::size_t operator()(const node_key& k) const noexcept {
    return std::hash<std::string>{}(k.id) ^ (static_cast<std::size_t>(k.iteration) * 0x9e3779b97f4a7c15ULL);
  }
};

} // namespace smithers
