#include <smithers/status.hpp>

#include <array>
#include <utility>

namespace smithers {

namespace {
constexpr std::array<std::pair<run_status, const char*>, 9> run_names{{
    {run_status::created, "created"},
    {run_status::running, "running"},
    {run_status::waiting_approval, "waiting-approval"},
    {run_status::waiting_event, "waiting-event"},
    {run_status::waiting_timer, "waiting-timer"},
    {run_status::finished, "finished"},
    {run_status::failed, "failed"},
    {run_status::cancelled, "cancelled"},
    {run_status::continued, "continued"},
}};
constexpr std::array<std::pair<node_state, const char*>, 9> node_names{{
    {node_state::pending, "pending"},
    {node_state::in_progress, "in-progress"},
    {node_state::finished, "finished"},
    {node_state::failed, "failed"},
    {node_state::skipped, "skipped"},
    {node_state::cancelled, "cancelled"},
    {node_state::waiting_approval, "waiting-approval"},
    {node_state::waiting_timer, "waiting-timer"},
    {node_state::waiting_event, "waiting-event"},
}};
} // namespace

const char* to_string(run_status s) {
  for (const auto& [v, n] : run_names)
    if (v == s) return n;
  return "?";
}

const char* to_string(node_state s) {
  for (const auto& [v, n] : node_names)
    if (v == s) return n;
  return "?";
}

std::optional<run_status> run_status_from(std::string_view s) {
  for (const auto& [v, n] : run_names)
    if (s == n) return v;
  return std::nullopt;
}

std::optional<node_state> node_state_from(std::string_view s) {
  for (const auto& [v, n] : node_names)
    if (s == n) return v;
  return std::nullopt;
}

} // namespace smithers
