// Templates: "{{input.path}}", "{{outputs.<node_id>.path}}", "{{iteration}}",
// "{{run_id}}", "{{node_id}}", "{{attempt}}" and, inside for_each, "{{<as>.path}}".
// Substituted values: strings as-is, other JSON as compact JSON text.
// A template that names something missing is an error, never "".
#pragma once

#include "spec/problem.hpp"
#include <smithers/errors.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace smithers::spec {

struct template_scope {
  const json* input = nullptr;
  const std::unordered_map<std::string, json>* outputs = nullptr; // latest iteration
  std::string run_id;
  std::string node_id;
  std::int64_t iteration = 0;
  std::int64_t attempt = 1;
  const json* locals = nullptr; // object: for_each variable name -> value
};

enum class quoting {
  none,  // argv element or env value: inserted verbatim
  shell, // `/bin/sh -c` string: every substituted value single-quoted
};

/// Syntax problems (unclosed "{{", empty or unknown root name). `local_names`
/// are extra allowed roots (for_each variables).
problems check_template(std::string_view text, const std::string& path,
                        const std::vector<std::string>& local_names = {});

/// Node ids referenced as "{{outputs.<id>...}}".
std::vector<std::string> template_output_refs(std::string_view text);

/// True if the text contains at least one "{{".
bool has_template(std::string_view text);

/// Expand all templates. Throws smithers_error(TEMPLATE_MISSING_VALUE) naming
/// the template and the missing part; details {"template": "{{...}}"}.
/// Syntax errors that check_template reports throw INVALID_WORKFLOW. A
/// for_each variable shadows a built-in root of the same name.
std::string expand(std::string_view text, const template_scope& scope, quoting q = quoting::none);

/// Single-quote a string for /bin/sh: 'it'\''s'. The empty string is ''.
std::string shell_quote(std::string_view s);

/// Follow a dotted path ("a.items.0.name") from `root`: segments name object
/// keys; on an array, a segment of digits is an index. "" is `root` itself.
/// nullptr when anything along the way is missing (also for an empty segment).
const json* find_path(const json& root, std::string_view dotted);

} // namespace smithers::spec
