#include "util/term_text.hpp"

#include <cstdio>

namespace smithers::util {

namespace {

// Length of the well-formed UTF-8 sequence at s[i] (Unicode Table 3-7), or 0.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 1;
  } else if (c == 0xE0) {
    n = 2, lo = 0xA0;
  } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
    n = 2;
  } else if (c == 0xED) {
    n = 2, hi = 0x9F;
  } else if (c == 0xF0) {
    n = 3, lo = 0x90;
  } else if (c >= 0xF1 && c <= 0xF3) {
    n = 3;
  } else if (c == 0xF4) {
    n = 3, hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n >= s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k <= n; ++k)
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  return n + 1;
}

unsigned code_point3(std::string_view s, std::size_t i) {
  auto b = [&](std::size_t k) { return static_cast<unsigned>(static_cast<unsigned char>(s[k])); };
  return ((b(i) & 0x0F) << 12) | ((b(i + 1) & 0x3F) << 6) | (b(i + 2) & 0x3F);
}

// Marks and embeddings/overrides/isolates that make text display in another
// order than it is written ("Trojan source").
bool is_bidi_control(unsigned cp) {
  return cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

void append_hex(std::string& out, const char* format, unsigned value) {
  char buf[8];
  std::snprintf(buf, sizeof buf, format, value);
  out += buf;
}

} // namespace

std::string term_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    if (c < 0x80) {
      if (c == '\n')
        out += "\\n";
      else if (c == '\r')
        out += "\\r";
      else if (c == '\t')
        out += "\\t";
      else
        append_hex(out, "\\x%02x", c);
      ++i;
      continue;
    }
    std::size_t n = utf8_length(s, i);
    if (n == 0) {
      append_hex(out, "\\x%02x", c);
      ++i;
    } else if (n == 2 && c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0) {
      append_hex(out, "\\u%04x", static_cast<unsigned char>(s[i + 1])); // C1 control
      i += 2;
    } else if (unsigned cp = n == 3 ? code_point3(s, i) : 0; is_bidi_control(cp)) {
      append_hex(out, "\\u%04x", cp); // reorders what the terminal shows
      i += 3;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

} // namespace smithers::util
