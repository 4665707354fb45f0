// The limits of SPEC §4, each a named constant so code, tests and docs agree.
#pragma once

#include <cstddef>
#include <cstdint>

namespace smithers::limits {

/// Run ids: 1..256 characters of [A-Za-z0-9._:-].
inline constexpr std::size_t max_run_id_length = 256;
/// Workflow file paths on the command line.
inline constexpr std::size_t max_workflow_path_bytes = 4096;
/// Run input: a JSON object within these bounds.
inline constexpr std::size_t max_input_bytes = 1024 * 1024; // serialized
inline constexpr std::size_t max_input_depth = 32;          // nesting levels
inline constexpr std::size_t max_input_array_items = 512;
inline constexpr std::size_t max_input_string_bytes = 64 * 1024;
/// Heartbeat data (checkpoints).
inline constexpr std::size_t max_heartbeat_bytes = 1000000;
/// State carried across continue-as-new.
inline constexpr std::size_t max_continuation_state_bytes = 10 * 1024 * 1024;
/// One argument or environment string ("NAME=value") of a command, its
/// terminating NUL included: Linux's MAX_ARG_STRLEN (32 pages).
inline constexpr std::size_t max_arg_string_bytes = 131072;
/// Upper bound for integer options (max_concurrency, retries, timeouts) so
/// that arithmetic on them never overflows.
inline constexpr std::int64_t max_option_value = 1'000'000'000'000LL;

} // namespace smithers::limits
