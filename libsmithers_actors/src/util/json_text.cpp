#include "util/json_text.hpp"

#include <charconv>
#include <cstdint>
#include <cstring>

namespace smithers::util {

namespace {

bool plain_byte(unsigned char c) {
  return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

// Printable ASCII without the two characters JSON escapes: written as is.
// Eight bytes at a time (every event's keys and ids pass through here).
bool plain(const std::string& s) {
  constexpr std::uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  auto has_zero = [](std::uint64_t v) { return ((v - ones) & ~v & highs) != 0; };
  const char* p = s.data();
  std::size_t n = s.size(), i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    if ((w & highs) != 0 ||                      // a byte >= 0x80
        ((w - 0x2020202020202020ULL) & highs) || // a byte < 0x20 (no high bits here)
        has_zero(w ^ (0x7f * ones)) || has_zero(w ^ ('"' * ones)) || has_zero(w ^ ('\\' * ones)))
      return false;
  }
  for (; i < n; ++i)
    if (!plain_byte(static_cast<unsigned char>(p[i]))) return false;
  return true;
}

void append_string(std::string& out, const std::string& s, json::error_handler_t handler) {
  if (plain(s)) {
    out += '"';
    out += s;
    out += '"';
  } else {
    out += json(s).dump(-1, ' ', false, handler);
  }
}

template <class Int> void append_int(std::string& out, Int v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

} // namespace

void append_json_string(std::string& out, const std::string& s, json::error_handler_t handler) {
  append_string(out, s, handler);
}

void append_json_int(std::string& out, std::int64_t v) {
  append_int(out, v);
}

void append_json(std::string& out, const json& v, json::error_handler_t handler) {
  switch (v.type()) {
  case json::value_t::null:
    out += "null";
    return;
  case json::value_t::boolean:
    out += v.get<bool>() ? "true" : "false";
    return;
  case json::value_t::number_integer:
    append_int(out, v.get<json::number_integer_t>());
    return;
  case json::value_t::number_unsigned:
    append_int(out, v.get<json::number_unsigned_t>());
    return;
  case json::value_t::string:
    append_string(out, v.get_ref<const json::string_t&>(), handler);
    return;
  case json::value_t::object: {
    out += '{';
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) out += ',';
      first = false;
      append_string(out, it.key(), handler);
      out += ':';
      append_json(out, it.value(), handler);
    }
    out += '}';
    return;
  }
  case json::value_t::array: {
    out += '[';
    bool first = true;
    for (const auto& x : v) {
      if (!first) out += ',';
      first = false;
      append_json(out, x, handler);
    }
    out += ']';
    return;
  }
  default: // doubles (nlohmann's shortest round-trip form), binary, discarded
    out += v.dump(-1, ' ', false, handler);
    return;
  }
}

std::string json_text(const json& v, json::error_handler_t handler) {
  std::string out;
  out.reserve(128); // an event's fields fit: no regrowth on the way
  append_json(out, v, handler);
  return out;
}

} // namespace smithers::util
