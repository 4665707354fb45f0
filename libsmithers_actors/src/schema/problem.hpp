// A problem found while validating a workflow, an input or an output:
// the JSON path of the offending value and what is wrong with it.
#pragma once

#include <string>
#include <vector>

namespace smithers::spec {

struct problem {
  std::string path; // e.g. "root.sequence[1].run" or "$.items[2].name"
  std::string message;

  bool operator==(const problem& o) const { return path == o.path && message == o.message; }
};

using problems = std::vector<problem>;

/// "path: message; path: message" for error messages.
std::string join(const problems& ps);

/// Append ".key" or "[i]" to a path.
inline std::string child_path(const std::string& base, const std::string& key) {
  return base.empty() ? key : base + "." + key;
}
inline std::string index_path(const std::string& base, std::size_t i) {
  return base + "[" + std::to_string(i) + "]";
}

} // namespace smithers::spec
