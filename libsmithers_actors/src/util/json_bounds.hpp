// Bounds on JSON that users hand us (docs/workflow-format.md#limits): run input and heartbeat data.
#pragma once

#include <smithers/errors.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace smithers::util {

/// INVALID_INPUT when `input` is not an object, serializes to more than
/// limits::max_input_bytes, nests deeper than max_input_depth, has an array
/// longer than max_input_array_items or a string longer than
/// max_input_string_bytes. The message names the JSON path ("$.a.b[3]").
/// Depth counts containers: the top-level object is depth 1, so 32 nested
/// objects/arrays pass and 33 do not (scalars add no depth). Object keys are
/// strings too. Non-finite numbers and ill-formed UTF-8 (only possible in JSON
/// built in C++) are INVALID_INPUT as well. details: {"path", "limit", "actual"}.
std::optional<error> check_input_bounds(const json& input);
/// A signal's payload: any JSON value, bounded like input (INVALID_INPUT).
std::optional<error> check_signal_payload(const json& payload);

/// HEARTBEAT_PAYLOAD_NOT_JSON_SERIALIZABLE for non-finite numbers,
/// HEARTBEAT_PAYLOAD_TOO_LARGE above limits::max_heartbeat_bytes serialized.
/// Ill-formed UTF-8 is NOT_JSON_SERIALIZABLE too; nesting deeper than
/// max_heartbeat_depth is TOO_LARGE. Any JSON type is accepted.
std::optional<error> check_heartbeat_data(const json& data);

/// INVALID_OUTPUT when a task's output nests deeper than
/// limits::max_output_depth, holds a non-finite number or ill-formed UTF-8
/// (possible only in JSON built in C++), or serializes to more than
/// `max_bytes`. Checked without recursion, before anything copies, compares,
/// validates or prints the value. Any JSON type is accepted here.
std::optional<error> check_output_bounds(const json& output, std::size_t max_bytes);

/// `code` when `value` nests deeper than `max_depth` containers, naming the
/// path of the first container beyond it ("<what> $.a.b: nesting depth ...").
/// Checked without recursion.
std::optional<error> check_depth(const json& value, std::size_t max_depth, const char* code,
                                 const char* what);

/// Heartbeat data nesting bound (containers, like max_input_depth): keeps the
/// recursive serializer far from the end of the stack. Exceeding it is
/// HEARTBEAT_PAYLOAD_TOO_LARGE.
inline constexpr std::size_t max_heartbeat_depth = 512;

/// Append a property to a JSON path: ".name" for identifier-like keys
/// ([A-Za-z_][A-Za-z0-9_-]*), otherwise ["..."] JSON-quoted; keys longer than
/// 64 bytes are cut (at a character boundary) and end with "...".
void append_path_key(std::string& path, std::string_view key);

/// Append "[i]" to a JSON path.
void append_path_index(std::string& path, std::size_t i);

/// True if `s` is well-formed UTF-8 (no overlongs, surrogates or code points
/// above U+10FFFF).
bool is_valid_utf8(std::string_view s);

} // namespace smithers::util
