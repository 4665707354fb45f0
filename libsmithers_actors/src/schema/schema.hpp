// Our JSON Schema subset (docs/workflow-format.md): type (a name or a list), properties,
// required, additionalProperties (bool), items, enum, const, minimum, maximum,
// minLength, maxLength, minItems, maxItems. No validator for nlohmann::json is
// packaged for Debian, so this one is ours.
#pragma once

#include "schema/problem.hpp"
#include <smithers/errors.hpp>

#include <cstddef>
#include <optional>
#include <string_view>

namespace smithers::spec {

/// Schemas nest at most this deep (each "properties.x" or "items" is a level),
/// so that validation recursion stays bounded.
inline constexpr std::size_t max_schema_depth = 64;

/// Problems with a schema itself (unknown keyword, wrong type of a keyword,
/// unknown type name...). Paths start at `path` (e.g. "outputs.count").
problems check_schema(const json& schema, const std::string& path);

/// Problems of `value` against a schema that passed check_schema. Paths start
/// at `root` and use ".name" for properties and "[i]" for items ("$.a[2].b");
/// keys that are not identifiers appear as ["a b"] (util::append_path_key).
/// Stops after `max_problems` (0 counts as 1, so a failing value always has
/// at least one problem). Keywords apply only to their own type (minimum to
/// numbers, minLength to strings...), as in JSON Schema; after a type
/// mismatch the other keywords of that schema are not checked.
problems validate(const json& schema, const json& value, const std::string& root = "$",
                  std::size_t max_problems = 20);

/// Compare two JSON numbers exactly, whatever their representation (int64,
/// uint64, double): -1, 0 or 1; nullopt if either is not a number or is NaN.
std::optional<int> compare_numbers(const json& a, const json& b);

/// True for numbers without a fractional part (3 and 3.0, not 3.5 or inf).
bool is_integral(const json& v);

/// Number of Unicode code points in UTF-8 text.
std::size_t utf8_length(std::string_view s);

} // namespace smithers::spec
