#include "expr/template.hpp"

#include <smithers/limits.hpp>

#include <algorithm>
#include <optional>

namespace smithers::spec {

namespace {

constexpr std::string_view open_mark = "{{";
constexpr std::string_view close_mark = "}}";

// Roots that take no path.
constexpr std::string_view scalar_roots[] = {"iteration", "run_id", "node_id", "attempt"};

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_space(s.back()))
    s.remove_suffix(1);
  return s;
}

bool is_scalar_root(std::string_view r) {
  return std::find(std::begin(scalar_roots), std::end(scalar_roots), r) != std::end(scalar_roots);
}

bool is_builtin_root(std::string_view r) {
  return r == "input" || r == "outputs" || is_scalar_root(r);
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Digits to an index; nullopt on overflow (any such index is out of range).
std::optional<std::size_t> parse_index(std::string_view s) {
  std::size_t v = 0;
  for (char c : s) {
    std::size_t d = static_cast<std::size_t>(c - '0');
    if (v > (static_cast<std::size_t>(-1) - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

struct template_ref {
  std::size_t open = 0;  // offset of "{{"
  std::size_t end = 0;   // offset just past "}}"
  std::string_view expr; // trimmed text between the marks
  bool closed = false;
};

std::optional<template_ref> next_template_ref(std::string_view text, std::size_t from) {
  std::size_t open = text.find(open_mark, from);
  if (open == std::string_view::npos) return std::nullopt;
  template_ref ph;
  ph.open = open;
  std::size_t close = text.find(close_mark, open + open_mark.size());
  if (close == std::string_view::npos) return ph;
  ph.closed = true;
  ph.end = close + close_mark.size();
  ph.expr = trim(text.substr(open + open_mark.size(), close - open - open_mark.size()));
  return ph;
}

std::string shown(std::string_view expr) {
  std::string s;
  s.reserve(expr.size() + 4);
  s += open_mark;
  s += expr;
  s += close_mark;
  return s;
}

std::string in_quotes(std::string_view s) {
  std::string q;
  q.reserve(s.size() + 2);
  q += '"';
  q += s;
  q += '"';
  return q;
}

// Split "a.b.c" into segments; an error message for malformed paths.
std::optional<std::string> split_expr(std::string_view expr, std::vector<std::string_view>& segs) {
  segs.clear();
  if (expr.empty()) return "empty template \"{{}}\"";
  std::size_t start = 0;
  while (true) {
    std::size_t dot = expr.find('.', start);
    std::string_view seg =
        expr.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (seg.empty()) return "template " + in_quotes(shown(expr)) + " has an empty path segment";
    for (char c : seg)
      if (is_space(c) || c == '{' || c == '}')
        return "template " + in_quotes(shown(expr)) + " contains an invalid character '" +
               std::string(1, c) + "' (paths are dotted names, e.g. {{input.repo}})";
    segs.push_back(seg);
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return std::nullopt;
}

// "id" -> -1 (the latest iteration), "id@N" -> N; nullopt when malformed.
std::optional<std::int64_t> iteration_of(std::string_view ref) {
  auto at = ref.find('@');
  if (at == std::string_view::npos) return -1;
  auto num = ref.substr(at + 1);
  if (at == 0 || num.empty() || num.size() > 15 || !all_digits(num)) return std::nullopt;
  std::int64_t n = 0;
  for (char c : num)
    n = n * 10 + (c - '0');
  return n;
}

// Root-level problems that check_template reports; nullopt when fine.
std::optional<std::string> root_problem(std::string_view expr,
                                        const std::vector<std::string_view>& segs,
                                        const std::vector<std::string>& local_names) {
  std::string_view root = segs[0];
  if (std::find(local_names.begin(), local_names.end(), root) != local_names.end())
    return std::nullopt;
  if (root == "outputs" && segs.size() < 2)
    return "template " + in_quotes(shown(expr)) + " needs a node id: {{outputs.<node_id>...}}";
  if (root == "outputs" && !iteration_of(segs[1]))
    return "template " + in_quotes(shown(expr)) +
           ": an iteration is written <node_id>@N, N a number (e.g. {{outputs.review@2.ok}})";
  if (is_scalar_root(root) && segs.size() > 1)
    return "template " + in_quotes(shown(expr)) + ": " + in_quotes(root) + " has no fields";
  if (is_builtin_root(root)) return std::nullopt;
  std::string expected = "input, outputs, iteration, run_id, node_id, attempt";
  for (const auto& n : local_names)
    expected += ", " + n;
  return "unknown name " + in_quotes(root) + " in template " + in_quotes(shown(expr)) +
         " (expected " + expected + ")";
}

[[noreturn]] void throw_missing(std::string_view expr, const std::string& what) {
  std::string t = shown(expr);
  throw smithers_error(errc::template_missing_value, "template " + in_quotes(t) + ": " + what,
                       json{{"template", t}});
}

std::string a_type(const json& v) {
  switch (v.type()) {
  case json::value_t::null:
    return "null";
  case json::value_t::object:
    return "an object";
  case json::value_t::array:
    return "an array";
  case json::value_t::boolean:
    return "a boolean";
  case json::value_t::string:
    return "a string";
  default:
    return "a number";
  }
}

// Follow segs[from..] from `start`; `expr` names the template in errors.
const json& descend(const json& start, std::string_view expr,
                    const std::vector<std::string_view>& segs, std::size_t from) {
  const json* cur = &start;
  for (std::size_t i = from; i < segs.size(); ++i) {
    std::string_view seg = segs[i];
    // The path so far is the expression up to the dot before `seg`
    // (segments are views into it).
    std::string_view where = expr.substr(0, static_cast<std::size_t>(seg.data() - expr.data()) - 1);
    if (cur->is_object()) {
      auto it = cur->find(seg);
      if (it == cur->end()) throw_missing(expr, in_quotes(where) + " has no key " + in_quotes(seg));
      cur = &*it;
    } else if (cur->is_array()) {
      if (!all_digits(seg))
        throw_missing(expr,
                      in_quotes(where) + " is an array; " + in_quotes(seg) + " is not an index");
      auto idx = parse_index(seg);
      if (!idx || *idx >= cur->size())
        throw_missing(expr, in_quotes(where) + " has " + std::to_string(cur->size()) +
                                " items, no index " + std::string(seg));
      cur = &(*cur)[*idx];
    } else {
      throw_missing(expr,
                    in_quotes(where) + " is " + a_type(*cur) + " and has no " + in_quotes(seg));
    }
  }
  return *cur;
}

std::string render(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string resolve(std::string_view expr, const std::vector<std::string_view>& segs,
                    const template_scope& scope) {
  std::string_view root = segs[0];
  // for_each variables shadow built-ins: the innermost scope wins.
  if (scope.locals && scope.locals->is_object()) {
    auto it = scope.locals->find(root);
    if (it != scope.locals->end()) return render(descend(*it, expr, segs, 1));
  }
  if (root == "input") {
    if (!scope.input) throw_missing(expr, "there is no input");
    return render(descend(*scope.input, expr, segs, 1));
  }
  if (root == "outputs") {
    if (segs.size() < 2)
      throw smithers_error(errc::invalid_workflow,
                           "template " + in_quotes(shown(expr)) + " needs a node id");
    auto n = iteration_of(segs[1]);
    if (!n)
      throw smithers_error(errc::invalid_workflow, "template " + in_quotes(shown(expr)) +
                                                       " names an iteration that is not a number");
    std::string node(segs[1].substr(0, segs[1].find('@')));
    const json* out = nullptr;
    if (*n >= 0) {
      if (scope.output_at) out = scope.output_at(node, *n);
      if (!out)
        throw_missing(expr, "node " + in_quotes(node) + " has no output in iteration " +
                                std::to_string(*n));
      return render(descend(*out, expr, segs, 2));
    }
    if (scope.outputs) {
      auto it = scope.outputs->find(node);
      if (it != scope.outputs->end()) out = &it->second;
    }
    if (!out) throw_missing(expr, "node " + in_quotes(node) + " has no output");
    return render(descend(*out, expr, segs, 2));
  }
  if (is_scalar_root(root)) {
    if (segs.size() > 1) throw_missing(expr, in_quotes(root) + " has no fields");
    if (root == "iteration") return std::to_string(scope.iteration);
    if (root == "attempt") return std::to_string(scope.attempt);
    return root == "run_id" ? scope.run_id : scope.node_id;
  }
  throw_missing(expr, in_quotes(root) + " is not defined here");
}

} // namespace

problems check_template(std::string_view text, const std::string& path,
                        const std::vector<std::string>& local_names) {
  problems out;
  std::vector<std::string_view> segs;
  std::size_t pos = 0;
  while (auto ph = next_template_ref(text, pos)) {
    if (!ph->closed) {
      out.push_back({path, "unclosed \"{{\" at offset " + std::to_string(ph->open)});
      break; // everything after it is inside the unclosed template
    }
    if (auto msg = split_expr(ph->expr, segs))
      out.push_back({path, *msg});
    else if (auto rmsg = root_problem(ph->expr, segs, local_names))
      out.push_back({path, *rmsg});
    pos = ph->end;
  }
  return out;
}

std::vector<std::string> template_output_refs(std::string_view text) {
  std::vector<std::string> refs;
  std::vector<std::string_view> segs;
  std::size_t pos = 0;
  while (auto ph = next_template_ref(text, pos)) {
    if (!ph->closed) break;
    pos = ph->end;
    if (split_expr(ph->expr, segs) || segs.size() < 2 || segs[0] != "outputs") continue;
    auto id = segs[1].substr(0, segs[1].find('@'));
    if (std::find(refs.begin(), refs.end(), id) == refs.end()) refs.emplace_back(id);
  }
  return refs;
}

bool has_template(std::string_view text) {
  return text.find(open_mark) != std::string_view::npos;
}

std::vector<template_span> find_templates(std::string_view text) {
  std::vector<template_span> spans;
  std::vector<std::string_view> segs;
  std::size_t pos = 0;
  while (auto ph = next_template_ref(text, pos)) {
    if (!ph->closed)
      throw smithers_error(errc::invalid_workflow,
                           "unclosed \"{{\" at offset " + std::to_string(ph->open));
    if (auto msg = split_expr(ph->expr, segs)) throw smithers_error(errc::invalid_workflow, *msg);
    spans.push_back({ph->open, ph->end, ph->expr});
    pos = ph->end;
  }
  return spans;
}

std::string resolve_template(std::string_view expr, const template_scope& scope) {
  std::vector<std::string_view> segs;
  if (auto msg = split_expr(expr, segs)) throw smithers_error(errc::invalid_workflow, *msg);
  std::string value = resolve(expr, segs, scope);
  // execve ends every string at its first NUL: a value cut there could name
  // a different file (".../dir\0/cache" would become ".../dir").
  if (value.find('\0') != std::string::npos) {
    std::string t = shown(expr);
    const char* code = segs[0] == "input"     ? errc::invalid_input
                       : segs[0] == "outputs" ? errc::invalid_output
                                              : errc::invalid_argument;
    throw smithers_error(code,
                         "template " + in_quotes(t) +
                             ": the value contains a NUL byte, which no argument or "
                             "environment variable can hold",
                         json{{"template", t}});
  }
  return value;
}

void check_arg_size(std::size_t bytes, std::string_view expr) {
  if (bytes < limits::max_arg_string_bytes) return; // its NUL makes it one more
  std::string what = "an argument or environment variable of " + std::to_string(bytes + 1) +
                     " bytes (with its terminating NUL)";
  json details = {{"bytes", bytes + 1}};
  if (!expr.empty()) {
    std::string t = shown(expr);
    what = "template " + in_quotes(t) + ": the value makes " + what;
    details["template"] = t;
  } else {
    what[0] = 'A';
  }
  throw smithers_error(errc::invalid_argument,
                       what + "; Linux allows at most " +
                           std::to_string(limits::max_arg_string_bytes) +
                           ": pass large values on stdin instead (the command receives "
                           "{input, needs} as JSON on stdin)",
                       std::move(details));
}

std::string expand(std::string_view text, const template_scope& scope, std::size_t prefix_bytes) {
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  std::string_view last;
  for (const auto& t : find_templates(text)) {
    out.append(text.substr(pos, t.open - pos));
    out += resolve_template(t.expr, scope);
    pos = t.end;
    last = t.expr;
    // Checked as it grows: a huge value fails before the rest is copied.
    check_arg_size(prefix_bytes + out.size(), last);
  }
  out.append(text.substr(pos));
  if (!last.empty()) check_arg_size(prefix_bytes + out.size(), last);
  return out;
}

std::string expand_text(std::string_view text, const template_scope& scope, std::size_t max_bytes,
                        const char* what) {
  std::string out;
  std::size_t pos = 0;
  for (const auto& t : find_templates(text)) {
    out.append(text.substr(pos, t.open - pos));
    out += resolve_template(t.expr, scope);
    pos = t.end;
    if (out.size() > max_bytes) break;
  }
  if (out.size() <= max_bytes) out.append(text.substr(pos));
  if (out.size() > max_bytes)
    throw smithers_error(errc::invalid_argument,
                         std::string{what} + " is larger than the limit of " +
                             std::to_string(max_bytes) + " bytes once its templates are filled",
                         {{"limit", max_bytes}});
  return out;
}

const json* find_path(const json& root, std::string_view dotted) {
  const json* cur = &root;
  if (dotted.empty()) return cur;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = dotted.find('.', start);
    std::string_view seg =
        dotted.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (seg.empty()) return nullptr;
    if (cur->is_object()) {
      auto it = cur->find(seg);
      if (it == cur->end()) return nullptr;
      cur = &*it;
    } else if (cur->is_array()) {
      if (!all_digits(seg)) return nullptr;
      auto idx = parse_index(seg);
      if (!idx || *idx >= cur->size()) return nullptr;
      cur = &(*cur)[*idx];
    } else {
      return nullptr;
    }
    if (dot == std::string_view::npos) return cur;
    start = dot + 1;
  }
}

std::optional<std::string> agent_command_template(std::string_view arg) {
  std::size_t pos = 0;
  while (auto ph = next_template_ref(arg, pos)) {
    if (!ph->closed) return std::string{"(unclosed)"};
    if (ph->expr != "prompt" && ph->expr != "model") return std::string{ph->expr};
    pos = ph->end;
  }
  return std::nullopt;
}

std::string fill_agent_argument(std::string_view arg, const std::string& prompt,
                                const std::string& model, bool& used_prompt) {
  std::string out;
  std::size_t pos = 0;
  while (auto ph = next_template_ref(arg, pos)) {
    if (!ph->closed) break; // refused when the workflow was loaded
    out.append(arg.substr(pos, ph->open - pos));
    if (ph->expr == "prompt") {
      out += prompt;
      used_prompt = true;
    } else if (ph->expr == "model") {
      out += model;
    } else {
      out.append(arg.substr(ph->open, ph->end - ph->open));
    }
    pos = ph->end;
  }
  out.append(arg.substr(pos));
  // A prompt or model can never turn an argument into an option ("--yes"):
  // a leading space keeps it a value, and means nothing to a model.
  if (!out.empty() && out[0] == '-' && (arg.empty() || arg[0] != '-')) out.insert(0, 1, ' ');
  return out;
}

} // namespace smithers::spec
