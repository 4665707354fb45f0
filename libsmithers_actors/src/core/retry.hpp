// Retry decisions: whether a failure is worth another attempt, and how long
// to wait before it. Pure.
#pragma once

#include <smithers/errors.hpp>
#include <smithers/workflow.hpp>

#include <cstdint>

namespace smithers::core {

/// Whether a failure with this code is retried: the code's traits
/// (smithers/errors.hpp, error_codes). Failures another attempt would only
/// repeat (bad output, bad workflow, a template value that cannot be passed)
/// are not.
bool is_retryable(const error& e);

/// Delay before attempt `next_attempt` (2, 3, ...) under `p`; `unit` in
/// [0, 1) draws the jitter.
std::int64_t backoff_ms(const retry_policy& p, std::int64_t next_attempt, double unit);

} // namespace smithers::core
