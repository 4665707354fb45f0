#include "util/json_bounds.hpp"

#include <smithers/limits.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace smithers::util {

namespace {

bool is_ident_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

bool is_ident_char(char c) {
  return is_ident_start(c) || (c >= '0' && c <= '9') || c == '-';
}

constexpr std::size_t max_path_key_bytes = 64;

// Cut at most `n` bytes without splitting a UTF-8 sequence.
std::string_view cut_utf8(std::string_view s, std::size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)
    --n;
  return s.substr(0, n);
}

enum class issue {
  none,
  depth,
  array_items,
  string_bytes,
  key_bytes,
  not_finite,
  bad_utf8,
  bad_key_utf8,
};

struct walk_limits {
  std::size_t max_depth;
  std::size_t max_array_items;  // 0: unbounded
  std::size_t max_string_bytes; // 0: unbounded (also applies to object keys)
  bool check_values = true;     // false: nesting only (UTF-8 and numbers unchecked)
};

struct walk_result {
  issue what = issue::none;
  std::string path;
  std::size_t actual = 0;
  // A lower bound of dump().size(): lets us refuse huge values without
  // serializing them.
  std::size_t size_lower_bound = 0;
  // An upper bound of dump().size() (a string byte is at most 6 escaped, a
  // number at most 32 characters): a value under the limit by it needs no
  // serializing at all — the common case, on every task's output.
  std::size_t size_upper_bound = 0;
};

// Iterative, so that arbitrarily deep values (nlohmann parses them without
// recursion) cannot overflow the stack here. Stops at the first issue, in
// document order. The path is only built when there is an issue.
walk_result walk(const json& root, const walk_limits& lim) {
  struct frame {
    const json* node;
    json::const_iterator it;
    std::size_t index;
    bool started;
  };
  walk_result r;
  std::vector<frame> stack;
  stack.reserve(16);

  // Path of the value the first `n` frames point at.
  auto path_to = [&](std::size_t n) {
    std::string p = "$";
    for (std::size_t i = 0; i < n; ++i) {
      if (stack[i].node->is_object())
        append_path_key(p, stack[i].it.key());
      else
        append_path_index(p, stack[i].index);
    }
    return p;
  };
  auto fail = [&](issue what, std::size_t frames, std::size_t actual) {
    r.what = what;
    r.path = path_to(frames);
    r.actual = actual;
    return false;
  };

  auto visit = [&](const json& v) -> bool {
    switch (v.type()) {
    case json::value_t::string: {
      const auto& s = v.get_ref<const std::string&>();
      r.size_lower_bound += s.size() + 2;
      r.size_upper_bound += 6 * s.size() + 2;
      if (lim.max_string_bytes != 0 && s.size() > lim.max_string_bytes)
        return fail(issue::string_bytes, stack.size(), s.size());
      if (lim.check_values && !is_valid_utf8(s)) return fail(issue::bad_utf8, stack.size(), 0);
      return true;
    }
    case json::value_t::number_float:
      r.size_lower_bound += 1;
      r.size_upper_bound += 32;
      if (lim.check_values && !std::isfinite(v.get<double>()))
        return fail(issue::not_finite, stack.size(), 0);
      return true;
    case json::value_t::object:
    case json::value_t::array: {
      std::size_t depth = stack.size() + 1;
      if (depth > lim.max_depth) return fail(issue::depth, stack.size(), depth);
      std::size_t n = v.size();
      if (v.is_array() && lim.max_array_items != 0 && n > lim.max_array_items)
        return fail(issue::array_items, stack.size(), n);
      // brackets, commas, and a colon per member
      r.size_lower_bound += 2 + (n > 0 ? n - 1 : 0) + (v.is_object() ? n : 0);
      r.size_upper_bound += 2 + n + (v.is_object() ? n : 0);
      stack.push_back({&v, v.cbegin(), 0, false});
      return true;
    }
    case json::value_t::boolean:
    case json::value_t::null:
      r.size_lower_bound += 4;
      r.size_upper_bound += 5;
      return true;
    default: // integers, binary
      r.size_lower_bound += 1;
      r.size_upper_bound += 32;
      return true;
    }
  };

  if (!visit(root)) return r;
  while (!stack.empty()) {
    frame& f = stack.back();
    if (f.started) {
      ++f.it;
      ++f.index;
    } else {
      f.started = true;
    }
    if (f.it == f.node->cend()) {
      stack.pop_back();
      continue;
    }
    if (f.node->is_object()) {
      const std::string& key = f.it.key();
      r.size_lower_bound += key.size() + 2;
      r.size_upper_bound += 6 * key.size() + 2;
      // Reported at the object's path: the key itself may be huge.
      if (lim.max_string_bytes != 0 && key.size() > lim.max_string_bytes) {
        fail(issue::key_bytes, stack.size() - 1, key.size());
        return r;
      }
      if (lim.check_values && !is_valid_utf8(key)) {
        fail(issue::bad_key_utf8, stack.size() - 1, 0);
        return r;
      }
    }
    const json& child = *f.it; // `f` may dangle once visit() pushes
    if (!visit(child)) return r;
  }
  return r;
}

std::string size_str(std::size_t n) {
  return std::to_string(n);
}

error issue_error(const char* code, const char* what, const walk_result& r,
                  const walk_limits& lim) {
  std::string prefix = std::string(what) + " " + r.path + ": ";
  json details = {{"path", r.path}};
  std::size_t limit = 0;
  std::string msg;
  switch (r.what) {
  case issue::depth:
    limit = lim.max_depth;
    msg = "nesting depth " + size_str(r.actual) + " exceeds the limit of " + size_str(limit);
    break;
  case issue::array_items:
    limit = lim.max_array_items;
    msg = "array of " + size_str(r.actual) + " items exceeds the limit of " + size_str(limit) +
          " items";
    break;
  case issue::string_bytes:
    limit = lim.max_string_bytes;
    msg = "string of " + size_str(r.actual) + " bytes exceeds the limit of " + size_str(limit) +
          " bytes";
    break;
  case issue::key_bytes:
    limit = lim.max_string_bytes;
    msg = "object key of " + size_str(r.actual) + " bytes exceeds the limit of " + size_str(limit) +
          " bytes";
    break;
  case issue::not_finite:
    msg = "number is not finite (NaN and Infinity are not JSON)";
    break;
  case issue::bad_utf8:
    msg = "string is not valid UTF-8";
    break;
  case issue::bad_key_utf8:
    msg = "object key is not valid UTF-8";
    break;
  case issue::none:
    break;
  }
  if (limit != 0) {
    details["limit"] = limit;
    details["actual"] = r.actual;
  }
  return error{code, prefix + msg, std::move(details)};
}

// Serialized size check. The walk's upper bound passes most values and its
// lower bound refuses huge ones without serializing them; otherwise dump once. Either way the message has one shape,
// "(at least N bytes)", since N is only exact when we dumped.
std::optional<error> check_size(const json& v, const walk_result& r, std::size_t limit,
                                const char* code, const char* what) {
  if (r.size_upper_bound <= limit) return std::nullopt;
  std::size_t size = r.size_lower_bound;
  if (size <= limit) {
    // UTF-8 was checked by the walk; `replace` only guarantees dump never throws.
    size = v.dump(-1, ' ', false, json::error_handler_t::replace).size();
    if (size <= limit) return std::nullopt;
  }
  return error{code,
               std::string(what) + " $: serialized size exceeds the limit of " + size_str(limit) +
                   " bytes (at least " + size_str(size) + " bytes)",
               {{"path", "$"}, {"limit", limit}, {"actual_at_least", size}}};
}

} // namespace

void append_path_key(std::string& path, std::string_view key) {
  bool ident = !key.empty() && key.size() <= max_path_key_bytes && is_ident_start(key[0]);
  for (std::size_t i = 1; ident && i < key.size(); ++i)
    ident = is_ident_char(key[i]);
  if (ident) {
    path += '.';
    path.append(key.data(), key.size());
    return;
  }
  std::string_view shown = cut_utf8(key, max_path_key_bytes);
  std::string quoted =
      json(std::string(shown)).dump(-1, ' ', false, json::error_handler_t::replace);
  if (shown.size() < key.size()) quoted.insert(quoted.size() - 1, "...");
  path += '[';
  path += quoted;
  path += ']';
}

void append_path_index(std::string& path, std::size_t i) {
  path += '[';
  path += std::to_string(i);
  path += ']';
}

bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    // ASCII fast path, eight bytes at a time.
    if (end - p >= 8) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      if ((w & 0x8080808080808080ULL) == 0) {
        p += 8;
        continue;
      }
    }
    unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    // Unicode Table 3-7: the allowed range of the second byte depends on the
    // first (excludes overlongs, surrogates and > U+10FFFF).
    std::ptrdiff_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c == 0xE0) {
      n = 2;
      lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
      n = 2;
    } else if (c == 0xED) {
      n = 2;
      hi = 0x9F;
    } else if (c == 0xF0) {
      n = 3;
      lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
      n = 3;
    } else if (c == 0xF4) {
      n = 3;
      hi = 0x8F;
    } else {
      return false;
    }
    if (end - p <= n) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (std::ptrdiff_t i = 2; i <= n; ++i)
      if ((p[i] & 0xC0) != 0x80) return false;
    p += n + 1;
  }
  return true;
}

namespace {

// Input's bounds (depth, array items, string and total bytes), for any value.
std::optional<error> check_input_like(const json& value, const char* what) {
  const walk_limits lim{limits::max_input_depth, limits::max_input_array_items,
                        limits::max_input_string_bytes};
  walk_result r = walk(value, lim);
  if (r.what != issue::none) return issue_error(errc::invalid_input, what, r, lim);
  return check_size(value, r, limits::max_input_bytes, errc::invalid_input, what);
}

} // namespace

std::optional<error> check_input_bounds(const json& input) {
  if (!input.is_object())
    return error{errc::invalid_input,
                 std::string("input must be a JSON object, got ") + input.type_name(),
                 {{"path", "$"}}};
  return check_input_like(input, "input");
}

std::optional<error> check_signal_payload(const json& payload) {
  return check_input_like(payload, "signal data");
}

std::optional<error> check_heartbeat_data(const json& data) {
  const walk_limits lim{max_heartbeat_depth, 0, 0};
  walk_result r = walk(data, lim);
  if (r.what == issue::depth)
    return issue_error(errc::heartbeat_payload_too_large, "heartbeat data", r, lim);
  if (r.what != issue::none)
    return issue_error(errc::heartbeat_payload_not_json, "heartbeat data", r, lim);
  return check_size(data, r, limits::max_heartbeat_bytes, errc::heartbeat_payload_too_large,
                    "heartbeat data");
}

std::optional<error> check_output_bounds(const json& output, std::size_t max_bytes) {
  const walk_limits lim{limits::max_output_depth, 0, 0};
  walk_result r = walk(output, lim);
  if (r.what != issue::none) return issue_error(errc::invalid_output, "output", r, lim);
  return check_size(output, r, max_bytes, errc::invalid_output, "output");
}

std::optional<error> check_depth(const json& value, std::size_t max_depth, const char* code,
                                 const char* what) {
  const walk_limits lim{max_depth, 0, 0, false};
  walk_result r = walk(value, lim);
  if (r.what != issue::depth) return std::nullopt;
  return issue_error(code, what, r, lim);
}

} // namespace smithers::util
