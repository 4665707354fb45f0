// Bounds on JSON that users hand us (SPEC §4): run input and heartbeat data.
#pragma once

#include <smithers/errors.hpp>

#include <optional>

namespace smithers::util {

/// INVALID_INPUT when `input` is not an object, serializes to more than
/// limits::max_input_bytes, nests deeper than max_input_depth, has an array
/// longer than max_input_array_items or a string longer than
/// max_input_string_bytes. The message names the JSON path ("$.a.b[3]").
std::optional<error> check_input_bounds(const json& input);

/// HEARTBEAT_PAYLOAD_NOT_JSON_SERIALIZABLE for non-finite numbers,
/// HEARTBEAT_PAYLOAD_TOO_LARGE above limits::max_heartbeat_bytes serialized.
std::optional<error> check_heartbeat_data(const json& data);

} // namespace smithers::util
