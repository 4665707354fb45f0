// Predicates for `until`, `if` and `skip_if` (docs/workflow-format.md):
//   {"output": "check.ok", "equals": true}, {"input": "dry_run", "exists": true}
// operators equals, not_equals, exists, gt, gte, lt, lte, in; combined with
// {"all": [...]}, {"any": [...]}, {"not": {...}}. Paths are dotted; output
// paths start with a node id.
#pragma once

#include "schema/problem.hpp"
#include <smithers/errors.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace smithers::spec {

/// Predicates nest ("all", "any", "not") at most this deep.
inline constexpr std::size_t max_predicate_depth = 64;

/// Problems with a predicate; paths start at `path` (e.g.
/// "root.sequence[0].skip_if") and go on with ".all[1].not.gt". An "output"
/// path is "<node_id>" (the whole output) or "<node_id>.<field>...".
problems check_predicate(const json& p, const std::string& path);

/// Node ids that output paths in the predicate refer to.
std::vector<std::string> predicate_output_refs(const json& p);

/// Where the node id of an `output` path ends: its first '.' outside a
/// template ("t-{{x.name}}.ok" -> 12), or npos.
std::size_t output_id_end(std::string_view path);

/// Evaluate a predicate that passed check_predicate. A missing value makes
/// comparisons false and `exists` false (never an error); `not_equals` on a
/// missing value is true (nothing is equal to it). A present null exists.
/// equals/in compare JSON values (1 equals 1.0); gt/gte/lt/lte are false
/// unless both sides are numbers. Numeric path segments index arrays.
bool evaluate(const json& p, const json& input,
              const std::unordered_map<std::string, json>& outputs);

} // namespace smithers::spec
