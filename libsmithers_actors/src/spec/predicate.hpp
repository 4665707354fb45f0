// Predicates for `until`, `if` and `skip_if` (SPEC §2):
//   {"output": "check.ok", "equals": true}, {"input": "dry_run", "exists": true}
// operators equals, not_equals, exists, gt, gte, lt, lte, in; combined with
// {"all": [...]}, {"any": [...]}, {"not": {...}}. Paths are dotted; output
// paths start with a node id.
#pragma once

#include <smithers/errors.hpp>
#include "spec/problem.hpp"

#include <unordered_map>

namespace smithers::spec {

problems check_predicate(const json& p, const std::string& path);

/// Node ids that output paths in the predicate refer to.
std::vector<std::string> predicate_output_refs(const json& p);

/// Evaluate a predicate that passed check_predicate. A missing value makes
/// comparisons false and `exists` false (never an error).
bool evaluate(const json& p, const json& input,
              const std::unordered_map<std::string, json>& outputs);

} // namespace smithers::spec
