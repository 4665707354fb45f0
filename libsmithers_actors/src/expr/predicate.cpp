#include "expr/predicate.hpp"

#include "expr/template.hpp"
#include "schema/schema.hpp"

#include <algorithm>
#include <cmath>
#include <string_view>

namespace smithers::spec {

namespace {

enum class op { equals, not_equals, exists, gt, gte, lt, lte, in, none };

constexpr const char* operators_text = "equals, not_equals, exists, gt, gte, lt, lte or in";
constexpr const char* kinds_text = "\"output\", \"input\", \"all\", \"any\" or \"not\"";

op operator_of(const std::string& k) {
  if (k == "equals") return op::equals;
  if (k == "not_equals") return op::not_equals;
  if (k == "exists") return op::exists;
  if (k == "gt") return op::gt;
  if (k == "gte") return op::gte;
  if (k == "lt") return op::lt;
  if (k == "lte") return op::lte;
  if (k == "in") return op::in;
  return op::none;
}

bool is_kind_key(const std::string& k) {
  return k == "output" || k == "input" || k == "all" || k == "any" || k == "not";
}

std::string dq(const std::string& s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) {
    // Cut at a character boundary: a message must stay valid UTF-8.
    std::size_t n = 77;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)
      --n;
    s = s.substr(0, n) + "...";
  }
  return s;
}

void check_node(const json& p, const std::string& path, std::size_t depth, problems& out);

void check_list(const json& p, const std::string& kind, const std::string& path, std::size_t depth,
                problems& out) {
  std::string lp = child_path(path, kind);
  const json& list = p.at(kind);
  if (!list.is_array()) {
    out.push_back({lp, "must be an array of predicates, got " + shown(list)});
  } else if (list.empty()) {
    out.push_back({lp, "must not be empty"});
  } else {
    for (std::size_t i = 0; i < list.size(); ++i)
      check_node(list[i], index_path(lp, i), depth + 1, out);
  }
}

void check_source_path(const json& v, const std::string& kind, const std::string& path,
                       problems& out) {
  std::string sp = child_path(path, kind);
  const char* form = kind == "output" ? "\"<node_id>.<field>...\"" : "\"<field>.<field>...\"";
  if (!v.is_string() || v.get_ref<const std::string&>().empty()) {
    out.push_back({sp, std::string("must be a dotted path ") + form + ", got " + shown(v)});
    return;
  }
  const auto& s = v.get_ref<const std::string&>();
  if (s.front() == '.' || s.back() == '.' || s.find("..") != std::string::npos)
    out.push_back({sp, "path " + dq(s) + " has an empty segment"});
}

void check_operand(op o, const json& v, const std::string& p, problems& out) {
  switch (o) {
  case op::exists:
    if (!v.is_boolean()) out.push_back({p, "must be true or false, got " + shown(v)});
    break;
  case op::gt:
  case op::gte:
  case op::lt:
  case op::lte:
    if (!v.is_number() || (v.is_number_float() && !std::isfinite(v.get<double>())))
      out.push_back({p, "must be a number, got " + shown(v)});
    break;
  case op::in:
    if (!v.is_array()) out.push_back({p, "must be an array of values, got " + shown(v)});
    break;
  default:
    break;
  }
}

void check_leaf(const json& p, const std::string& kind, const std::string& path, problems& out) {
  check_source_path(p.at(kind), kind, path, out);
  std::vector<std::string> ops;
  for (auto it = p.begin(); it != p.end(); ++it) {
    const std::string& key = it.key();
    if (key == kind) continue;
    op o = operator_of(key);
    if (o == op::none) {
      out.push_back({child_path(path, key),
                     "unknown operator " + dq(key) + " (expected " + operators_text + ")"});
      continue;
    }
    ops.push_back(key);
    check_operand(o, it.value(), child_path(path, key), out);
  }
  if (ops.empty()) {
    out.push_back({path, std::string("predicate needs an operator: ") + operators_text});
  } else if (ops.size() > 1) {
    std::string list;
    for (const auto& o : ops)
      list += (list.empty() ? "" : ", ") + dq(o);
    out.push_back({path, "predicate has more than one operator (" + list +
                             "); combine separate predicates with \"all\""});
  }
}

void check_node(const json& p, const std::string& path, std::size_t depth, problems& out) {
  if (!p.is_object()) {
    out.push_back({path, std::string("predicate must be an object, got ") + shown(p)});
    return;
  }
  if (depth > max_predicate_depth) {
    out.push_back(
        {path, "predicate nests deeper than " + std::to_string(max_predicate_depth) + " levels"});
    return;
  }
  std::vector<std::string> kinds;
  for (auto it = p.begin(); it != p.end(); ++it)
    if (is_kind_key(it.key())) kinds.push_back(it.key());
  if (kinds.empty()) {
    out.push_back({path, std::string("predicate needs one of ") + kinds_text});
    return;
  }
  if (kinds.size() > 1) {
    std::string list;
    for (const auto& k : kinds)
      list += (list.empty() ? "" : " and ") + dq(k);
    out.push_back({path, "predicate has both " + list + "; use exactly one of " + kinds_text});
    return;
  }
  const std::string& kind = kinds.front();
  if (kind == "output" || kind == "input") {
    check_leaf(p, kind, path, out);
    return;
  }
  for (auto it = p.begin(); it != p.end(); ++it)
    if (it.key() != kind)
      out.push_back({child_path(path, it.key()),
                     "unknown key " + dq(it.key()) + "; " + dq(kind) + " takes no other keys"});
  if (kind == "not")
    check_node(p.at("not"), child_path(path, "not"), depth + 1, out);
  else
    check_list(p, kind, path, depth, out);
}

void collect_refs(const json& p, std::size_t depth, std::vector<std::string>& refs) {
  if (!p.is_object() || depth > max_predicate_depth) return;
  if (auto it = p.find("output"); it != p.end() && it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    std::string node = s.substr(0, output_id_end(s));
    if (!node.empty() && std::find(refs.begin(), refs.end(), node) == refs.end())
      refs.push_back(std::move(node));
  }
  for (const char* k : {"all", "any"})
    if (auto it = p.find(k); it != p.end() && it->is_array())
      for (const auto& e : *it)
        collect_refs(e, depth + 1, refs);
  if (auto it = p.find("not"); it != p.end()) collect_refs(*it, depth + 1, refs);
}

// The value a leaf reads; nullptr when missing.
const json* leaf_value(const json& p, const json& input,
                       const std::unordered_map<std::string, json>& outputs) {
  if (auto it = p.find("input"); it != p.end()) {
    if (!it->is_string()) return nullptr;
    return find_path(input, it->get_ref<const std::string&>());
  }
  auto it = p.find("output");
  if (it == p.end() || !it->is_string()) return nullptr;
  std::string_view s = it->get_ref<const std::string&>();
  std::size_t dot = output_id_end(s);
  auto out = outputs.find(std::string(s.substr(0, dot)));
  if (out == outputs.end()) return nullptr;
  return dot == std::string_view::npos ? &out->second : find_path(out->second, s.substr(dot + 1));
}

bool evaluate_leaf(const json& p, const json& input,
                   const std::unordered_map<std::string, json>& outputs) {
  const json* v = leaf_value(p, input, outputs);
  for (auto it = p.begin(); it != p.end(); ++it) {
    const json& operand = it.value();
    switch (operator_of(it.key())) {
    case op::equals:
      return v && *v == operand;
    case op::not_equals:
      // A missing value equals nothing, so it is "not equal" to anything.
      return !v || !(*v == operand);
    case op::exists:
      return operand.is_boolean() && (v != nullptr) == operand.get<bool>();
    case op::gt:
    case op::gte:
    case op::lt:
    case op::lte: {
      if (!v) return false;
      auto c = compare_numbers(*v, operand); // nullopt unless both are numbers
      if (!c) return false;
      op o = operator_of(it.key());
      return o == op::gt ? *c > 0 : o == op::gte ? *c >= 0 : o == op::lt ? *c < 0 : *c <= 0;
    }
    case op::in:
      return v && operand.is_array() &&
             std::find(operand.begin(), operand.end(), *v) != operand.end();
    case op::none:
      break;
    }
  }
  return false; // no operator: check_predicate rejects this
}

bool evaluate_node(const json& p, const json& input,
                   const std::unordered_map<std::string, json>& outputs, std::size_t depth) {
  if (!p.is_object() || depth > max_predicate_depth) return false;
  if (auto it = p.find("all"); it != p.end()) {
    if (!it->is_array()) return false;
    return std::all_of(it->begin(), it->end(),
                       [&](const json& e) { return evaluate_node(e, input, outputs, depth + 1); });
  }
  if (auto it = p.find("any"); it != p.end()) {
    if (!it->is_array()) return false;
    return std::any_of(it->begin(), it->end(),
                       [&](const json& e) { return evaluate_node(e, input, outputs, depth + 1); });
  }
  if (auto it = p.find("not"); it != p.end()) return !evaluate_node(*it, input, outputs, depth + 1);
  return evaluate_leaf(p, input, outputs);
}

} // namespace

std::size_t output_id_end(std::string_view path) {
  bool in_template = false;
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (!in_template && path.compare(i, 2, "{{") == 0) {
      in_template = true;
      ++i;
    } else if (in_template && path.compare(i, 2, "}}") == 0) {
      in_template = false;
      ++i;
    } else if (!in_template && path[i] == '.') {
      return i;
    }
  }
  return std::string_view::npos;
}

problems check_predicate(const json& p, const std::string& path) {
  problems out;
  check_node(p, path, 1, out);
  return out;
}

std::vector<std::string> predicate_output_refs(const json& p) {
  std::vector<std::string> refs;
  collect_refs(p, 1, refs);
  return refs;
}

bool evaluate(const json& p, const json& input,
              const std::unordered_map<std::string, json>& outputs) {
  return evaluate_node(p, input, outputs, 1);
}

} // namespace smithers::spec
