// The one parser for JSON text from outside (workflow files, run input,
// command outputs, heartbeat lines, stored rows): bounded while it parses.
//
// nlohmann's parser is iterative, but copying, comparing, dumping and
// validating a json value recurse, so a deep value crashes later. Here a
// container nested deeper than the limit stops the parse before it is built.
//
// What nlohmann 3.11.2 does underneath, and what this parser makes of it:
// - 1e400, -1e400, 1.8e308 (overflow to +-inf): refused, not_finite.
// - 1e-400 (underflow): 0.0, kept. -0 is the integer 0; -0.0 stays -0.0.
// - Integers beyond 64 bits (184467440737095516160, below INT64_MIN): a
//   double, rounded (1.8446744073709552e+20), as in json::parse and JavaScript.
// - Ill-formed UTF-8 in strings or keys (overlongs, encoded surrogates, bytes
//   above U+10FFFF) and lone surrogate escapes (\ud800): syntax errors, so
//   every string in a parsed value is valid UTF-8 and dump() cannot throw.
// - Empty or all-whitespace text: a syntax error at the end of the text.
// - A NUL byte anywhere (nlohmann would end the text there and accept
//   "[1]\0junk"): a syntax error at that byte, path "$", found before parsing.
// - A UTF-8 byte order mark before the value is skipped.
// - Comments, NaN, Infinity, trailing commas, trailing text: syntax errors.
#pragma once

#include <smithers/errors.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace smithers::util {

struct json_parse_limits {
  // Containers, as in json_bounds.hpp: the top-level object or array is depth
  // 1 and scalars add none. 0 allows scalars only. Keep it far below what the
  // recursive copy/dump can take (thousands, not millions).
  std::size_t max_depth;
  std::size_t max_bytes = 0; // 0: unbounded; a longer text is refused unread
};

enum class json_problem { syntax, too_large, depth, duplicate_key, not_finite };

struct json_parse_error {
  json_problem what = json_problem::syntax;
  // Where, as "$", "$.a.b[3]" (util::append_path_key/_index): the container
  // that is too deep, the member whose key repeats, the number's place; for
  // syntax errors the innermost open container, or the member whose value
  // was being read.
  std::string path = "$";
  // What and where, without the caller's prefix: "nesting depth 33 exceeds
  // the limit of 32", "duplicate key \"x\"", "number 1e400 is out of range",
  // "syntax error while parsing array at byte 4 (line 1, column 5): ...".
  // Valid UTF-8: of the text it quotes only keys (cut to 64 bytes) and
  // numbers (cut to 40), never a string or bytes around a syntax error.
  std::string message;
  // Offset of the offending byte: the bracket that opens the too-deep
  // container, the duplicate key's opening quote, the number's first byte,
  // the byte where the syntax error was found (text.size() at the end).
  std::size_t byte = 0;
  std::size_t limit = 0, actual = 0; // depth and too_large only
};

/// Parses `text` into a value no deeper than lim.max_depth, with unique keys
/// and finite numbers. On failure returns nullopt and fills *err (if not
/// null) with the first problem: the size, then NUL bytes, then the first in
/// document order. Never throws for bad text.
std::optional<json> parse_json(std::string_view text, const json_parse_limits& lim,
                               json_parse_error* err);

/// The problem as an error with `code`: message "<what> <path>: <message>"
/// (e.g. "input $.a: duplicate key \"x\""), details {"path"} plus "limit" and
/// "actual" for depth and too_large, "byte" for syntax errors.
error to_error(const json_parse_error& e, const char* code, std::string_view what);

} // namespace smithers::util
