#include "util/read_file.hpp"

#include <cerrno>
#include <cstring>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace smithers::util {

namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

} // namespace

file_read read_regular_file(const std::string& path, std::size_t max_bytes) {
  file_read res;
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    res.error = std::generic_category().message(errno);
    return res;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    res.error = std::generic_category().message(errno);
    ::close(fd);
    return res;
  }
  if (!S_ISREG(st.st_mode)) {
    res.error = std::string("it is ") + kind_of(st.st_mode);
    ::close(fd);
    return res;
  }
  if (static_cast<std::size_t>(st.st_size) > max_bytes) {
    res.too_large = true;
    ::close(fd);
    return res;
  }
  // The size may change under us: read to EOF, but never past the bound.
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      res.error = std::generic_category().message(errno);
      ::close(fd);
      return res;
    }
    if (n == 0) break;
    if (text.size() + static_cast<std::size_t>(n) > max_bytes) {
      res.too_large = true;
      ::close(fd);
      return res;
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  res.text = std::move(text);
  return res;
}

} // namespace smithers::util
