#include "schema/problem.hpp"

namespace smithers::spec {

std::string join(const problems& ps) {
  std::string out;
  for (const auto& p : ps) {
    if (!out.empty()) out += "; ";
    out += p.path.empty() ? p.message : p.path + ": " + p.message;
  }
  return out;
}

} // namespace smithers::spec
