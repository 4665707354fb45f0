#include "schema/schema.hpp"

#include "util/json_bounds.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace smithers::spec {

namespace {

enum class kw {
  type,
  properties,
  required,
  additional_properties,
  items,
  enum_,
  const_,
  minimum,
  maximum,
  min_length,
  max_length,
  min_items,
  max_items,
  string_annotation, // title, description, $comment, $schema: ignored, must be strings
  any_annotation,    // default, examples: ignored
  unknown,
};

// Switch on the first byte: this runs for every keyword of every schema node
// of every validated value.
kw keyword_of(const std::string& k) {
  if (k.empty()) return kw::unknown;
  switch (k[0]) {
  case 't':
    return k == "type" ? kw::type : k == "title" ? kw::string_annotation : kw::unknown;
  case 'p':
    return k == "properties" ? kw::properties : kw::unknown;
  case 'r':
    return k == "required" ? kw::required : kw::unknown;
  case 'a':
    return k == "additionalProperties" ? kw::additional_properties : kw::unknown;
  case 'i':
    return k == "items" ? kw::items : kw::unknown;
  case 'e':
    return k == "enum" ? kw::enum_ : k == "examples" ? kw::any_annotation : kw::unknown;
  case 'c':
    return k == "const" ? kw::const_ : kw::unknown;
  case 'm':
    if (k == "minimum") return kw::minimum;
    if (k == "maximum") return kw::maximum;
    if (k == "minLength") return kw::min_length;
    if (k == "maxLength") return kw::max_length;
    if (k == "minItems") return kw::min_items;
    if (k == "maxItems") return kw::max_items;
    return kw::unknown;
  case 'd':
    return k == "description" ? kw::string_annotation
           : k == "default"   ? kw::any_annotation
                              : kw::unknown;
  case '$':
    return k == "$comment" || k == "$schema" ? kw::string_annotation : kw::unknown;
  default:
    return kw::unknown;
  }
}

constexpr const char* type_names[] = {"object",  "array",   "string", "number",
                                      "integer", "boolean", "null"};
constexpr const char* known_types_text = "object, array, string, number, integer, boolean or null";
constexpr const char* supported_keywords_text =
    "type, properties, required, additionalProperties, items, enum, const, minimum, maximum, "
    "minLength, maxLength, minItems, maxItems; annotations title, description, default, "
    "examples, $comment, $schema";

bool is_type_name(const std::string& t) {
  return std::any_of(std::begin(type_names), std::end(type_names),
                     [&](const char* n) { return t == n; });
}

bool matches_type(const std::string& t, const json& v) {
  if (t.empty()) return false;
  switch (t[0]) {
  case 'o':
    return v.is_object() && t == "object";
  case 'a':
    return v.is_array() && t == "array";
  case 's':
    return v.is_string() && t == "string";
  case 'n':
    return t == "number" ? v.is_number() : t == "null" && v.is_null();
  case 'i':
    return t == "integer" && is_integral(v);
  case 'b':
    return v.is_boolean() && t == "boolean";
  default:
    return false;
  }
}

bool matches_type_keyword(const json& type, const json& v) {
  if (type.is_string()) return matches_type(type.get_ref<const std::string&>(), v);
  if (type.is_array()) {
    for (const auto& t : type)
      if (t.is_string() && matches_type(t.get_ref<const std::string&>(), v)) return true;
    return false;
  }
  return true; // malformed (check_schema reports it): do not constrain
}

// "string", "string or null", "string, integer or null"
std::string describe_type_keyword(const json& type) {
  if (type.is_string()) return type.get<std::string>();
  std::string out;
  std::size_t n = type.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0) out += i + 1 == n ? " or " : ", ";
    out += type[i].is_string() ? type[i].get<std::string>() : type[i].dump();
  }
  return out;
}

std::string value_type_name(const json& v) {
  if (v.is_number()) return is_integral(v) ? "integer" : "number";
  return v.type_name();
}

// Compact JSON for messages, cut to a readable length.
std::string short_dump(const json& j) {
  constexpr std::size_t max_len = 120;
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > max_len) {
    std::size_t n = max_len - 3;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)
      --n;
    s.resize(n);
    s += "...";
  }
  return s;
}

std::string json_quoted(const std::string& s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

bool is_non_negative_integer(const json& v) {
  if (!is_integral(v)) return false;
  auto c = compare_numbers(v, json(0));
  return c && *c >= 0;
}

// A count keyword as a size; huge values saturate.
std::size_t as_size(const json& v) {
  if (v.is_number_unsigned()) return static_cast<std::size_t>(v.get<std::uint64_t>());
  if (v.is_number_integer()) {
    auto i = v.get<std::int64_t>();
    return i < 0 ? 0 : static_cast<std::size_t>(i);
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (!(d > 0)) return 0;
    if (d >= 18446744073709551616.0) return std::numeric_limits<std::size_t>::max();
    return static_cast<std::size_t>(d);
  }
  return 0;
}

int cmp_signed_double(std::int64_t i, double d) {
  if (d >= 9223372036854775808.0) // 2^63
    return -1;
  if (d < -9223372036854775808.0) return 1;
  double t = std::trunc(d);
  auto ti = static_cast<std::int64_t>(t);
  if (i != ti) return i < ti ? -1 : 1;
  double frac = d - t;
  return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

int cmp_unsigned_double(std::uint64_t u, double d) {
  if (d < 0) return 1;
  if (d >= 18446744073709551616.0) // 2^64
    return -1;
  double t = std::trunc(d);
  auto tu = static_cast<std::uint64_t>(t);
  if (u != tu) return u < tu ? -1 : 1;
  return d - t > 0 ? -1 : 0;
}

// Compare an integer json (signed or unsigned) with a double.
int cmp_int_double(const json& a, double d) {
  return a.is_number_unsigned() ? cmp_unsigned_double(a.get<std::uint64_t>(), d)
                                : cmp_signed_double(a.get<std::int64_t>(), d);
}

// ---------------------------------------------------------------- check_schema

void check_node(const json& s, const std::string& path, std::size_t depth, problems& out);

void check_type_keyword(const json& t, const std::string& path, problems& out) {
  auto unknown = [&](const std::string& p, const json& name) {
    out.push_back({p, "unknown type " + short_dump(name) + " (expected " + known_types_text + ")"});
  };
  if (t.is_string()) {
    if (!is_type_name(t.get_ref<const std::string&>())) unknown(path, t);
    return;
  }
  if (!t.is_array()) {
    out.push_back({path, "must be a type name or an array of type names, got " + short_dump(t)});
    return;
  }
  if (t.empty()) {
    out.push_back({path, "must not be an empty array"});
    return;
  }
  for (std::size_t i = 0; i < t.size(); ++i) {
    const json& e = t[i];
    std::string p = index_path(path, i);
    if (!e.is_string()) {
      out.push_back({p, "must be a type name, got " + short_dump(e)});
    } else if (!is_type_name(e.get_ref<const std::string&>())) {
      unknown(p, e);
    } else if (std::find(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(i), e) !=
               t.begin() + static_cast<std::ptrdiff_t>(i)) {
      out.push_back({p, "duplicate type " + short_dump(e)});
    }
  }
}

void check_required_keyword(const json& r, const std::string& path, problems& out) {
  if (!r.is_array()) {
    out.push_back({path, "must be an array of property names, got " + short_dump(r)});
    return;
  }
  for (std::size_t i = 0; i < r.size(); ++i) {
    const json& e = r[i];
    if (!e.is_string())
      out.push_back(
          {index_path(path, i), "must be a property name (string), got " + short_dump(e)});
    else if (std::find(r.begin(), r.begin() + static_cast<std::ptrdiff_t>(i), e) !=
             r.begin() + static_cast<std::ptrdiff_t>(i))
      out.push_back({index_path(path, i), "duplicate required property " + short_dump(e)});
  }
}

void check_bounds_pair(const json* lo, const json* hi, const char* lo_name, const char* hi_name,
                       const std::string& path, problems& out) {
  if (!lo || !hi) return;
  auto c = compare_numbers(*lo, *hi);
  if (c && *c > 0)
    out.push_back({child_path(path, lo_name), std::string(lo_name) + " " + lo->dump() +
                                                  " is greater than " + hi_name + " " +
                                                  hi->dump()});
}

void check_node(const json& s, const std::string& path, std::size_t depth, problems& out) {
  if (!s.is_object()) {
    out.push_back({path, std::string("schema must be an object, got ") + s.type_name()});
    return;
  }
  if (depth > max_schema_depth) {
    out.push_back(
        {path, "schema nests deeper than " + std::to_string(max_schema_depth) + " levels"});
    return;
  }
  // Well-typed bounds, for the cross checks below.
  const json *minimum = nullptr, *maximum = nullptr, *min_len = nullptr, *max_len = nullptr,
             *min_items = nullptr, *max_items = nullptr, *properties = nullptr, *required = nullptr;
  bool no_additional = false;

  for (auto it = s.begin(); it != s.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    std::string p = child_path(path, key);
    switch (keyword_of(key)) {
    case kw::type:
      check_type_keyword(v, p, out);
      break;
    case kw::properties:
      if (!v.is_object()) {
        out.push_back({p, "must be an object of schemas, got " + short_dump(v)});
        break;
      }
      properties = &v;
      for (auto pi = v.begin(); pi != v.end(); ++pi)
        check_node(pi.value(), child_path(p, pi.key()), depth + 1, out);
      break;
    case kw::required:
      check_required_keyword(v, p, out);
      if (v.is_array()) required = &v;
      break;
    case kw::additional_properties:
      if (!v.is_boolean())
        out.push_back(
            {p, "must be true or false (schemas are not supported here), got " + short_dump(v)});
      else
        no_additional = !v.get<bool>();
      break;
    case kw::items:
      if (v.is_array())
        out.push_back({p, "must be a schema object (tuple arrays are not supported)"});
      else
        check_node(v, p, depth + 1, out);
      break;
    case kw::enum_:
      if (!v.is_array())
        out.push_back({p, "must be an array of values, got " + short_dump(v)});
      else if (v.empty())
        out.push_back({p, "must not be empty (no value would be valid)"});
      break;
    case kw::const_:
      break;
    case kw::minimum:
    case kw::maximum:
      if (!v.is_number() || (v.is_number_float() && !std::isfinite(v.get<double>()))) {
        out.push_back({p, "must be a number, got " + short_dump(v)});
        break;
      }
      (keyword_of(key) == kw::minimum ? minimum : maximum) = &v;
      break;
    case kw::min_length:
    case kw::max_length:
    case kw::min_items:
    case kw::max_items: {
      if (!is_non_negative_integer(v)) {
        out.push_back({p, "must be a non-negative integer, got " + short_dump(v)});
        break;
      }
      kw k = keyword_of(key);
      (k == kw::min_length   ? min_len
       : k == kw::max_length ? max_len
       : k == kw::min_items  ? min_items
                             : max_items) = &v;
      break;
    }
    case kw::string_annotation:
      if (!v.is_string()) out.push_back({p, "must be a string, got " + short_dump(v)});
      break;
    case kw::any_annotation:
      if (key == "examples" && !v.is_array())
        out.push_back({p, "must be an array, got " + short_dump(v)});
      break;
    case kw::unknown:
      out.push_back({p, "unknown or unsupported keyword " + json_quoted(key) +
                            " (supported: " + supported_keywords_text + ")"});
      break;
    }
  }

  check_bounds_pair(minimum, maximum, "minimum", "maximum", path, out);
  check_bounds_pair(min_len, max_len, "minLength", "maxLength", path, out);
  check_bounds_pair(min_items, max_items, "minItems", "maxItems", path, out);

  // A required property that no object may have: the schema rejects everything.
  if (required && no_additional) {
    std::string p = child_path(path, "required");
    for (std::size_t i = 0; i < required->size(); ++i) {
      const json& name = (*required)[i];
      bool declared = properties && name.is_string() &&
                      properties->contains(name.get_ref<const std::string&>());
      if (name.is_string() && !declared)
        out.push_back({index_path(p, i), "required property " + short_dump(name) +
                                             " is not in properties and additionalProperties is "
                                             "false, so no object can be valid"});
    }
  }
}

// -------------------------------------------------------------------- validate

// The path of the value being validated, as a chain of stack frames: nothing
// is allocated unless a problem is reported.
struct vpath {
  const vpath* parent;
  const std::string* key; // property name; nullptr for an array index
  std::size_t index;
};

struct vctx {
  problems& out;
  std::size_t max;
  const std::string& root;

  bool full() const { return out.size() >= max; }

  void add(const vpath* p, std::string message) {
    std::vector<const vpath*> chain;
    for (; p != nullptr; p = p->parent)
      chain.push_back(p);
    std::string path = root;
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      if ((*it)->key)
        util::append_path_key(path, *(*it)->key);
      else
        util::append_path_index(path, (*it)->index);
    }
    out.push_back({std::move(path), std::move(message)});
  }
};

struct keywords {
  const json* type = nullptr;
  const json* properties = nullptr;
  const json* required = nullptr;
  const json* additional = nullptr;
  const json* items = nullptr;
  const json* enum_ = nullptr;
  const json* const_ = nullptr;
  const json* minimum = nullptr;
  const json* maximum = nullptr;
  const json* min_length = nullptr;
  const json* max_length = nullptr;
  const json* min_items = nullptr;
  const json* max_items = nullptr;
};

keywords collect(const json& s) {
  keywords k;
  for (auto it = s.begin(); it != s.end(); ++it) {
    const json* v = &it.value();
    switch (keyword_of(it.key())) {
    case kw::type:
      k.type = v;
      break;
    case kw::properties:
      k.properties = v->is_object() ? v : nullptr;
      break;
    case kw::required:
      k.required = v->is_array() ? v : nullptr;
      break;
    case kw::additional_properties:
      k.additional = v->is_boolean() ? v : nullptr;
      break;
    case kw::items:
      k.items = v->is_object() ? v : nullptr;
      break;
    case kw::enum_:
      k.enum_ = v->is_array() ? v : nullptr;
      break;
    case kw::const_:
      k.const_ = v;
      break;
    case kw::minimum:
      k.minimum = v->is_number() ? v : nullptr;
      break;
    case kw::maximum:
      k.maximum = v->is_number() ? v : nullptr;
      break;
    case kw::min_length:
      k.min_length = v->is_number() ? v : nullptr;
      break;
    case kw::max_length:
      k.max_length = v->is_number() ? v : nullptr;
      break;
    case kw::min_items:
      k.min_items = v->is_number() ? v : nullptr;
      break;
    case kw::max_items:
      k.max_items = v->is_number() ? v : nullptr;
      break;
    default:
      break;
    }
  }
  return k;
}

void validate_node(const json& s, const json& v, const vpath* p, vctx& c) {
  if (c.full() || !s.is_object()) return;
  const keywords k = collect(s);

  if (k.type && !matches_type_keyword(*k.type, v)) {
    c.add(p, "expected " + describe_type_keyword(*k.type) + ", got " + value_type_name(v));
    return;
  }
  if (k.enum_ && std::find(k.enum_->begin(), k.enum_->end(), v) == k.enum_->end())
    c.add(p, "value is not one of the enum values " + short_dump(*k.enum_));
  if (k.const_ && !(*k.const_ == v))
    c.add(p, "value must equal the const value " + short_dump(*k.const_));

  switch (v.type()) {
  case json::value_t::number_integer:
  case json::value_t::number_unsigned:
  case json::value_t::number_float: {
    // NaN compares with nothing: it fails both bounds.
    if (k.minimum) {
      auto r = compare_numbers(v, *k.minimum);
      if (!r || *r < 0) c.add(p, "must be >= " + k.minimum->dump());
    }
    if (k.maximum) {
      auto r = compare_numbers(v, *k.maximum);
      if (!r || *r > 0) c.add(p, "must be <= " + k.maximum->dump());
    }
    break;
  }
  case json::value_t::string: {
    if (!k.min_length && !k.max_length) break;
    std::size_t len = utf8_length(v.get_ref<const std::string&>());
    if (k.min_length && len < as_size(*k.min_length))
      c.add(p, "length " + std::to_string(len) + " is below minLength " + k.min_length->dump());
    if (k.max_length && len > as_size(*k.max_length))
      c.add(p, "length " + std::to_string(len) + " exceeds maxLength " + k.max_length->dump());
    break;
  }
  case json::value_t::array: {
    std::size_t n = v.size();
    if (k.min_items && n < as_size(*k.min_items))
      c.add(p, "item count " + std::to_string(n) + " is below minItems " + k.min_items->dump());
    if (k.max_items && n > as_size(*k.max_items))
      c.add(p, "item count " + std::to_string(n) + " exceeds maxItems " + k.max_items->dump());
    if (k.items) {
      for (std::size_t i = 0; i < n && !c.full(); ++i) {
        vpath child{p, nullptr, i};
        validate_node(*k.items, v[i], &child, c);
      }
    }
    break;
  }
  case json::value_t::object: {
    if (k.required) {
      for (const auto& name : *k.required) {
        if (c.full()) return;
        if (name.is_string() && !v.contains(name.get_ref<const std::string&>()))
          c.add(p, "missing required property " + short_dump(name));
      }
    }
    bool no_additional = k.additional && !k.additional->get<bool>();
    if (!k.properties && !no_additional) break;
    for (auto it = v.begin(); it != v.end() && !c.full(); ++it) {
      const json* sub = nullptr;
      if (k.properties) {
        auto f = k.properties->find(it.key());
        if (f != k.properties->end()) sub = &*f;
      }
      if (sub) {
        vpath child{p, &it.key(), 0};
        validate_node(*sub, it.value(), &child, c);
      } else if (no_additional) {
        c.add(p, "additional property " + json_quoted(it.key()) + " is not allowed");
      }
    }
    break;
  }
  default:
    break;
  }
}

} // namespace

problems check_schema(const json& schema, const std::string& path) {
  problems out;
  check_node(schema, path, 1, out);
  return out;
}

problems validate(const json& schema, const json& value, const std::string& root,
                  std::size_t max_problems) {
  problems out;
  vctx c{out, max_problems == 0 ? 1 : max_problems, root};
  validate_node(schema, value, nullptr, c);
  return out;
}

std::optional<int> compare_numbers(const json& a, const json& b) {
  if (!a.is_number() || !b.is_number()) return std::nullopt;
  bool fa = a.is_number_float(), fb = b.is_number_float();
  if ((fa && std::isnan(a.get<double>())) || (fb && std::isnan(b.get<double>())))
    return std::nullopt;
  if (fa && fb) {
    double x = a.get<double>(), y = b.get<double>();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (fb) return cmp_int_double(a, b.get<double>());
  if (fa) return -cmp_int_double(b, a.get<double>());
  // Both integers; mixed signedness must not wrap.
  bool ua = a.is_number_unsigned(), ub = b.is_number_unsigned();
  if (ua && ub) {
    auto x = a.get<std::uint64_t>(), y = b.get<std::uint64_t>();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (!ua && !ub) {
    auto x = a.get<std::int64_t>(), y = b.get<std::int64_t>();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (ua) {
    auto y = b.get<std::int64_t>();
    if (y < 0) return 1;
    auto x = a.get<std::uint64_t>();
    auto yu = static_cast<std::uint64_t>(y);
    return x < yu ? -1 : x > yu ? 1 : 0;
  }
  auto x = a.get<std::int64_t>();
  if (x < 0) return -1;
  auto xu = static_cast<std::uint64_t>(x);
  auto y = b.get<std::uint64_t>();
  return xu < y ? -1 : xu > y ? 1 : 0;
}

bool is_integral(const json& v) {
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return false;
  double d = v.get<double>();
  return std::isfinite(d) && std::trunc(d) == d;
}

std::size_t utf8_length(std::string_view s) {
  std::size_t n = 0;
  for (char ch : s)
    n += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
  return n;
}

} // namespace smithers::spec
