// JSON text as nlohmann's dump() writes it (compact, keys in order), byte
// for byte, faster for what the engine writes on every task: event fields
// and rows made of ids, states, integers and small objects. nlohmann's
// dump() sets up an output adapter per call and escapes strings one code
// point at a time; here plain ASCII strings and integers are appended
// directly and anything else (doubles, strings that need escaping or hold
// non-ASCII bytes, binary) is handed to nlohmann for that value, so the
// output — and an error on ill-formed UTF-8 under the strict handler — is
// nlohmann's own.
#pragma once

#include <smithers/errors.hpp>

#include <cstdint>
#include <string>

namespace smithers::util {

/// Appends v's text to out; `handler` as in json::dump.
void append_json(std::string& out, const json& v,
                 json::error_handler_t handler = json::error_handler_t::strict);

/// Appends the JSON string for s (as json(s).dump(), without the copy).
void append_json_string(std::string& out, const std::string& s,
                        json::error_handler_t handler = json::error_handler_t::strict);

/// Appends the decimal integer v.
void append_json_int(std::string& out, std::int64_t v);

/// v.dump(-1, ' ', false, handler), faster.
std::string json_text(const json& v, json::error_handler_t handler = json::error_handler_t::strict);

} // namespace smithers::util
