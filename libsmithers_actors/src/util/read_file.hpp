// Reading files a user names (workflow files, input files): only regular
// files, never blocking on a FIFO, never reading more than a bound.
#pragma once

#include <cstddef>
#include <string>

namespace smithers::util {

struct file_read {
  std::string text;
  std::string error;      // non-empty: why the file could not be read
  bool too_large = false; // more than max_bytes (text holds nothing then)
};

/// Reads `path` if it is a regular file of at most `max_bytes`. It is opened
/// without blocking (a FIFO put in its place cannot stall the caller) and
/// checked on the open descriptor: a directory, FIFO, device or socket is
/// refused with a message that says what it is, as is an unreadable file
/// (with the system's reason).
file_read read_regular_file(const std::string& path, std::size_t max_bytes);

} // namespace smithers::util
