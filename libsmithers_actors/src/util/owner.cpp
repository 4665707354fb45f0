#include "util/owner.hpp"

#include "util/ids.hpp"

#include <csignal>
#include <fcntl.h>
#include <sstream>
#include <unistd.h>

namespace smithers::util {

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown-host";
  return buf;
}

std::optional<std::int64_t> process_start_time(std::int64_t pid) {
  // Plain read(): the process may end while we read, and libstdc++'s
  // streams throw on that instead of failing.
  int fd = ::open(("/proc/" + std::to_string(pid) + "/stat").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string content;
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    content.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  // The command name (field 2) may hold spaces and parentheses: fields are
  // counted from the last ')'. Field 3 is the state, field 22 the start time.
  auto close = content.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(content.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22; ++i) {
    if (!(rest >> field)) return std::nullopt;
    if (i == 3 && field == "Z") return std::nullopt; // a zombie has ended
  }
  try {
    return std::stoll(field);
  } catch (...) {
    return std::nullopt;
  }
}

std::string make_owner_id() {
  auto pid = static_cast<std::int64_t>(::getpid());
  return host_name() + ":" + std::to_string(pid) + ":" +
         std::to_string(process_start_time(pid).value_or(0)) + ":" + random_hex(6);
}

std::optional<owner_info> parse_owner_id(const std::string& id) {
  // The host may itself contain ':' (it should not, but be lenient): split
  // the last three fields off the end.
  auto c3 = id.rfind(':');
  if (c3 == std::string::npos || c3 == 0) return std::nullopt;
  auto c2 = id.rfind(':', c3 - 1);
  if (c2 == std::string::npos || c2 == 0) return std::nullopt;
  auto c1 = id.rfind(':', c2 - 1);
  if (c1 == std::string::npos) return std::nullopt;
  owner_info o;
  o.host = id.substr(0, c1);
  try {
    o.pid = std::stoll(id.substr(c1 + 1, c2 - c1 - 1));
    o.start_time = std::stoll(id.substr(c2 + 1, c3 - c2 - 1));
  } catch (...) {
    return std::nullopt;
  }
  o.nonce = id.substr(c3 + 1);
  return o;
}

bool end_orphaned_group(const std::string& host, std::int64_t pgid, std::int64_t start_time) {
  if (pgid <= 1 || host != host_name()) return false;
  auto start = process_start_time(pgid);
  if (start && start_time != 0 && *start != start_time) return false;
  return ::kill(static_cast<pid_t>(-pgid), SIGKILL) == 0;
}

owner_state check_owner(const std::string& owner_id) {
  auto o = parse_owner_id(owner_id);
  if (!o || o->host != host_name()) return owner_state::unknown;
  auto start = process_start_time(o->pid);
  if (!start) return owner_state::dead;
  if (o->start_time != 0 && *start != o->start_time)
    return owner_state::dead; // the pid was reused by another process
  return owner_state::alive;
}

} // namespace smithers::util
