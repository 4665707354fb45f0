// Who drives a run: "host:pid:pid-start-time:random". The pid's start time
// (from /proc) tells a reused pid from the owner; the random part tells two
// engines of one process apart.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace smithers::util {

struct owner_info {
  std::string host;
  std::int64_t pid = 0;
  std::int64_t start_time = 0; // clock ticks since boot, 0 when unknown
  std::string nonce;
};

/// A new owner id for this process.
std::string make_owner_id();

std::optional<owner_info> parse_owner_id(const std::string& id);

/// The start time of a live process, or nullopt when there is none.
std::optional<std::int64_t> process_start_time(std::int64_t pid);

std::string host_name();

enum class owner_state {
  alive,   // on this host, the same process still runs
  dead,    // on this host, that process is gone (or the pid was reused)
  unknown, // another host (or an id we cannot read): only heartbeats tell
};

owner_state check_owner(const std::string& owner_id);

/// Ends (SIGKILL) the process group `pgid` that a dead owner on this host
/// left behind, unless its leader's pid now belongs to another process (start
/// time differs). A group outliving its leader keeps its id reserved, so a
/// gone leader is safe to signal. True when a signal was sent.
bool end_orphaned_group(const std::string& host, std::int64_t pgid, std::int64_t start_time);

} // namespace smithers::util
