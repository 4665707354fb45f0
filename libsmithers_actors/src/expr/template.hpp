// Templates: "{{input.path}}", "{{outputs.<node_id>.path}}" (the latest
// finished iteration), "{{outputs.<node_id>@N.path}}" (iteration N), "{{iteration}}",
// "{{run_id}}", "{{node_id}}", "{{attempt}}" and, inside for_each, "{{<as>.path}}".
// Substituted values: strings as-is, other JSON as compact JSON text.
// A template that names something missing is an error, never "". A value
// no argument or environment variable can hold (a NUL byte, more than
// limits::max_arg_string_bytes) is an error too, never a silent cut.
// Shell scripts are not expanded here: see expr/shell_template.hpp.
#pragma once

#include "schema/problem.hpp"
#include <smithers/errors.hpp>

#include <cstdint>
#include <functional>
#include <optional>
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
  /// "outputs.<id>@N": the output of that node in iteration N, or nullptr.
  std::function<const json*(std::string_view id, std::int64_t iteration)> output_at;
};

/// One "{{...}}" in a text: [open, end) covers the marks, `expr` is the
/// trimmed text between them.
struct template_span {
  std::size_t open = 0;
  std::size_t end = 0;
  std::string_view expr;
};

/// Syntax problems (unclosed "{{", empty or unknown root name). `local_names`
/// are extra allowed roots (for_each variables).
problems check_template(std::string_view text, const std::string& path,
                        const std::vector<std::string>& local_names = {});

/// Node ids referenced as "{{outputs.<id>...}}" (and "<id>@N").
std::vector<std::string> template_output_refs(std::string_view text);

/// True if the text contains at least one "{{".
bool has_template(std::string_view text);

/// The templates of a text in order. Throws INVALID_WORKFLOW on the syntax
/// errors check_template reports (unclosed "{{", malformed path).
std::vector<template_span> find_templates(std::string_view text);

/// The value of one template expression ("input.repo"), as text. Throws
/// TEMPLATE_MISSING_VALUE naming the template and the missing part (details
/// {"template": "{{...}}"}), and for a value with a NUL byte INVALID_INPUT
/// (an `input` value), INVALID_OUTPUT (an `outputs` value) or
/// INVALID_ARGUMENT. A for_each variable shadows a built-in root.
std::string resolve_template(std::string_view expr, const template_scope& scope);

/// Expand all templates verbatim (an argv element or env value), with the
/// errors of find_templates and resolve_template. `prefix_bytes` counts what
/// the final string carries before the text ("NAME=" of an env value): a
/// result that, with them and its NUL, exceeds limits::max_arg_string_bytes
/// is refused (check_arg_size).
std::string expand(std::string_view text, const template_scope& scope,
                   std::size_t prefix_bytes = 0);

/// Expand all templates of a text that goes to stdin (an agent's prompt):
/// no argument-size limit, but INVALID_ARGUMENT beyond `max_bytes` (`what`
/// names the text in the message).
std::string expand_text(std::string_view text, const template_scope& scope, std::size_t max_bytes,
                        const char* what);

/// Throws INVALID_ARGUMENT when a string of `bytes` (plus its NUL) is more
/// than one argument or environment variable can hold; `expr`, when not
/// empty, names the template whose value filled it.
void check_arg_size(std::size_t bytes, std::string_view expr);

/// An agent's command is literal but for "{{prompt}}" and "{{model}}"
/// (docs/agents.md): the first other template's expression, or nullopt.
std::optional<std::string> agent_command_template(std::string_view arg);

/// `arg` with "{{prompt}}" and "{{model}}" replaced; `used_prompt` is set
/// when a "{{prompt}}" was there. A result that the filling made start with
/// '-' gets a leading space: a value never becomes an option.
std::string fill_agent_argument(std::string_view arg, const std::string& prompt,
                                const std::string& model, bool& used_prompt);

/// Follow a dotted path ("a.items.0.name") from `root`: segments name object
/// keys; on an array, a segment of digits is an index. "" is `root` itself.
/// nullptr when anything along the way is missing (also for an empty segment).
const json* find_path(const json& root, std::string_view dotted);

} // namespace smithers::spec
