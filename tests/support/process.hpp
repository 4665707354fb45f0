// Processes a test started, or that a task started and reported: whether one
// still runs, and a pid a task wrote into a file.
#pragma once

#include <fstream>
#include <string>
#include <sys/types.h>

namespace test_support {

/// Whether a process exists and is not a zombie (in a container, pid 1 may
/// be slow or unable to reap orphans, so a dead one can stay a zombie).
inline bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return false;
  std::string stat;
  std::getline(in, stat);
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  char state = stat[close + 2];
  return state != 'Z' && state != 'X';
}

/// A pid written by a task into a file (0 when there is none yet).
inline pid_t pid_from_file(const std::string& path) {
  std::ifstream in(path);
  long pid = 0;
  if (in >> pid) return static_cast<pid_t>(pid);
  return 0;
}

} // namespace test_support
