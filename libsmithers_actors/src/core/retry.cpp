#include "core/retry.hpp"

#include <algorithm>
#include <cmath>

namespace smithers::core {

bool is_retryable(const error& e) {
  return traits_of(e.code).retryable;
}

std::int64_t backoff_ms(const retry_policy& p, std::int64_t next_attempt, double unit) {
  double d = static_cast<double>(p.initial_ms) *
             std::pow(p.backoff, static_cast<double>(std::max<std::int64_t>(0, next_attempt - 2)));
  d = std::min(d, static_cast<double>(p.max_ms));
  if (p.jitter > 0) d *= 1.0 + p.jitter * (2.0 * unit - 1.0);
  return std::max<std::int64_t>(0, static_cast<std::int64_t>(d));
}

} // namespace smithers::core
