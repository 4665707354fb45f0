// Our JSON Schema subset (SPEC §2): type (a name or a list), properties,
// required, additionalProperties (bool), items, enum, const, minimum, maximum,
// minLength, maxLength, minItems, maxItems. No validator for nlohmann::json is
// packaged for Debian, so this one is ours.
#pragma once

#include <smithers/errors.hpp>
#include "spec/problem.hpp"

namespace smithers::spec {

/// Problems with a schema itself (unknown keyword, wrong type of a keyword,
/// unknown type name...). Paths start at `path` (e.g. "outputs.count").
problems check_schema(const json& schema, const std::string& path);

/// Problems of `value` against a schema that passed check_schema. Paths start
/// at `root` and use ".name" for properties and "[i]" for items ("$.a[2].b").
/// Stops after `max_problems`.
problems validate(const json& schema, const json& value, const std::string& root = "$",
                  std::size_t max_problems = 20);

} // namespace smithers::spec
