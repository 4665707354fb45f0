// What every fuzz target shares: how a finding is reported (abort(), which
// libFuzzer and the replay both report as a crash), the rule that only a
// smithers_error may escape the library, and splitting one input into parts.
#pragma once

#include "util/json_bounds.hpp"

#include <smithers/errors.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

namespace smithers::fuzz {

/// A finding: print what broke (and a bounded piece of the evidence) and
/// abort, so libFuzzer writes the input as a crash file.
[[noreturn]] inline void finding(std::string_view what, std::string_view evidence = {}) {
  constexpr std::size_t shown = 2000;
  std::fprintf(stderr, "\nFUZZ FINDING: %.*s\n", static_cast<int>(what.size()), what.data());
  if (!evidence.empty())
    std::fprintf(stderr, "  evidence (%zu bytes): %.*s%s\n", evidence.size(),
                 static_cast<int>(std::min(evidence.size(), shown)), evidence.data(),
                 evidence.size() > shown ? "..." : "");
  std::fflush(stderr);
  std::abort();
}

inline void require(bool ok, std::string_view what, std::string_view evidence = {}) {
  if (!ok) finding(what, evidence);
}

/// An error as the engine stores and prints it: its JSON must serialize.
/// `strict`: without replacing bad UTF-8 (the tests expect these errors'
/// text to be valid UTF-8 already).
inline void check_error(const error& e, bool strict = true) {
  require(!e.code.empty(), "an error without a code", e.message);
  try {
    if (strict)
      (void)e.to_json().dump();
    else
      (void)e.to_json().dump(-1, ' ', false, json::error_handler_t::replace);
  } catch (const std::exception& x) {
    finding(std::string{"an error does not serialize: "} + x.what(), e.message);
  }
}

/// Runs f; a smithers_error is an accepted outcome (checked with
/// check_error), any other exception is a finding.
template <class F> void guarded(const char* what, F&& f, bool strict = true) {
  try {
    f();
  } catch (const smithers_error& e) {
    check_error(e.err(), strict);
  } catch (const std::exception& e) {
    finding(std::string{what} + ": an exception that is not a smithers_error escaped: " + e.what());
  } catch (...) {
    finding(std::string{what} + ": a non-std exception escaped");
  }
}

/// The input cut at NUL bytes into at most `n` parts (the last part keeps
/// any further NULs). JSON text cannot hold a raw NUL, so it separates the
/// JSON documents of one input; missing parts are empty.
inline std::vector<std::string_view> split_parts(std::string_view in, std::size_t n) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < n) {
    auto nul = in.find('\0');
    if (nul == std::string_view::npos) break;
    parts.push_back(in.substr(0, nul));
    in.remove_prefix(nul + 1);
  }
  parts.push_back(in);
  parts.resize(n);
  return parts;
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

/// dump() that must not throw: for values the code promises are valid UTF-8.
inline std::string dump_strict(const json& j, std::string_view what) {
  try {
    return j.dump();
  } catch (const std::exception& e) {
    finding(std::string{what} + ": does not serialize: " + e.what());
  }
}

} // namespace smithers::fuzz
