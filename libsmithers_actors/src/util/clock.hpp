#pragma once

#include <chrono>
#include <cstdint>

namespace smithers::util {

/// Wall-clock milliseconds since the epoch: what we persist and show.
inline std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace smithers::util
