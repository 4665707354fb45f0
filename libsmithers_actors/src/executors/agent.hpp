// Agent tasks (docs/agents.md): a prompt handed to a command-line AI agent,
// its answer extracted like a command's output and checked against the
// task's schema; asked again (up to agent_max_follow_ups times) when the
// answer does not fit; a failure that reads like bad credentials is
// AGENT_AUTH_FAILED. The pure parts are here, for table-driven tests.
#pragma once

#include "executors/executor.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace smithers::executors {

/// Follow-ups within one attempt before it fails INVALID_OUTPUT.
inline constexpr int agent_max_follow_ups = 3;

/// What is appended to every prompt: the answer's format and the schema
/// (none: any object).
std::string agent_contract(const json* schema);

/// The prompt of follow-up `n` (1..3): the first prompt (contract included),
/// then the problems of the previous answer and a short summary of it.
std::string agent_follow_up(const std::string& prompt, const json& problems,
                            std::string_view previous_answer);

/// The phrase of the documented list (docs/agents.md, "Authentication
/// failures") found in `text`, case-insensitively, or nullopt. "401" counts
/// as a number of its own only.
std::optional<std::string> auth_failure_phrase(std::string_view text);

/// The agent executor (executor_for(task_kind::agent)).
const executor& agent_executor();

} // namespace smithers::executors
