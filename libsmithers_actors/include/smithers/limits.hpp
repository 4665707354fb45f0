// The limits of docs/workflow-format.md#limits, each a named constant so code, tests and docs agree.
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
/// A task's output: nesting levels (containers, like max_input_depth) and,
/// by default, its serialized size. The size limit can be raised per engine
/// (engine_config::max_output_bytes) or per run (`smithers run
/// --max-output-bytes`), up to max_output_bytes_ceiling.
inline constexpr std::size_t max_output_depth = 128;
inline constexpr std::size_t default_max_output_bytes = 4 * 1024 * 1024;
inline constexpr std::size_t max_output_bytes_ceiling = 256 * 1024 * 1024;
/// A command's stdout is kept up to this many times the output limit (the
/// output is extracted from it); more stops the command (INVALID_OUTPUT).
inline constexpr std::size_t stdout_bytes_per_output_byte = 4;
/// Workflow files: size, and JSON nesting (each node level is two: the
/// node object and its children's array).
inline constexpr std::size_t max_workflow_bytes = 64 * 1024 * 1024;
inline constexpr std::size_t max_workflow_depth = 128;
/// JSON read back from the database: far above anything the engine writes
/// (heartbeat data may nest 512 levels), far below what would exhaust the
/// stack when it is copied or printed.
inline constexpr std::size_t max_stored_json_depth = 1024;
/// A loop's max_iterations: a billion iterations of one task would be
/// hundreds of gigabytes of history in one run.
inline constexpr std::int64_t max_loop_iterations = 1'000'000'000LL;
/// State carried across continue-as-new.
inline constexpr std::size_t max_continuation_state_bytes = 10 * 1024 * 1024;
/// One argument or environment string ("NAME=value") of a command, its
/// terminating NUL included: Linux's MAX_ARG_STRLEN (32 pages).
inline constexpr std::size_t max_arg_string_bytes = 131072;
/// A signal's name: 1..128 bytes of letters, digits and . _ : - / (INVALID_ARGUMENT).
inline constexpr std::size_t max_signal_name_bytes = 128;
/// An approval's note (--note) and who decided it (--by), in bytes.
inline constexpr std::size_t max_note_bytes = 64 * 1024;
inline constexpr std::size_t max_decider_bytes = 256;
/// Signals stored for a run that no node has taken yet (INVALID_ARGUMENT
/// beyond): what nobody waits for cannot pile up without bound.
inline constexpr std::size_t max_open_signals = 1000;
/// A worker's slots (attempts at once; a thread each).
inline constexpr std::int64_t max_worker_slots = 4096;
/// WORKER_LOST failures of one attempt that are re-dispatched without
/// counting against the task's retries; the next one counts.
inline constexpr std::int64_t max_free_redispatches = 3;
/// An agent's prompt once its templates are filled (INVALID_ARGUMENT
/// beyond): far above any agent's context window.
inline constexpr std::size_t max_prompt_bytes = 4 * 1024 * 1024;
/// Text of NodeOutput events per attempt; the rest is counted in the
/// attempt's meta (output_dropped_bytes).
inline constexpr std::size_t max_streamed_output_bytes = 64 * 1024;
/// Upper bound for integer options (max_concurrency, retries, timeouts) so
/// that arithmetic on them never overflows.
inline constexpr std::int64_t max_option_value = 1'000'000'000'000LL;

} // namespace smithers::limits
