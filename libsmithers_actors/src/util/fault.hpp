// Fault injection for tests (docs/testing.md, "Fault injection"): named
// points in the store where a test makes the process fail a write, see
// SQLITE_BUSY, find the disk full, or exit on the spot, by a schedule.
//
// A schedule is rules "POINT#K=ACTION" separated by commas: the K-th time
// (from 1) a point matching POINT is reached in this process, ACTION
// happens. POINT is a name ("store.commit"), a prefix ending in '*'
// ("store.write.*"), or "*" (every point, counted together). ACTION is
// fail | busy | full (a DB_ERROR thrown where the point is) or exit (the
// process ends at once with exit code 86, as if killed). The schedule comes
// from arm_faults() or, at the first point reached, from the environment
// variable SMITHERS_FAULTS. A rule that fires first prints "smithers: fault
// injected at POINT" on stderr. Release builds compile the points out.
#pragma once

#include <string>
#include <string_view>

namespace smithers::util {

/// The exit code of a process that an `exit` fault ended.
inline constexpr int fault_exit_code = 86;

#ifdef SMITHERS_FAULTS
/// Whether any rule is armed (cheap: call fault_point only then when its
/// name costs something to build).
bool faults_armed();
/// A named point: counts it and does what an armed rule says.
void fault_point(std::string_view name);
#else
inline bool faults_armed() {
  return false;
}
inline void fault_point(std::string_view) {}
#endif

/// Replaces the schedule (empty: none); INVALID_ARGUMENT for a bad one.
/// Counts start again from zero.
void arm_faults(const std::string& schedule);

} // namespace smithers::util
