// Run statuses and node states (docs/reference.md#states) and their stable names.
#pragma once

#include <optional>
#include <string_view>

namespace smithers {

enum class run_status {
  created, // exists, never started (a fork made without --run): `resume` starts it
  running,
  waiting_approval,
  waiting_event,
  waiting_timer,
  finished,
  failed,
  cancelled,
  continued,
};

enum class node_state {
  pending,
  in_progress,
  finished,
  failed,
  skipped,
  cancelled,
  waiting_approval,
  waiting_timer,
  waiting_event,
};

/// Attempt states (docs/reference.md#states), as stored and shown.
namespace attempt_state {
inline constexpr const char* in_progress = "in-progress";
inline constexpr const char* finished = "finished";
inline constexpr const char* failed = "failed";
inline constexpr const char* cancelled = "cancelled";
} // namespace attempt_state

/// Why a node was cancelled (NodeCancelled's `reason`, docs/reference.md#events).
namespace cancel_reason {
inline constexpr const char* cancelled = "cancelled";     // the run was cancelled
inline constexpr const char* unmounted = "unmounted";     // a render dropped it while it ran
inline constexpr const char* interrupted = "interrupted"; // its process went away; resumable
inline constexpr const char* run_failed = "run-failed";   // the run failed before it ran
} // namespace cancel_reason

const char* to_string(run_status s);
const char* to_string(node_state s);
std::optional<run_status> run_status_from(std::string_view s);
std::optional<node_state> node_state_from(std::string_view s);

/// finished, failed, cancelled or continued: nothing more will happen.
inline bool is_terminal(run_status s) {
  return s == run_status::finished || s == run_status::failed || s == run_status::cancelled ||
         s == run_status::continued;
}

} // namespace smithers
