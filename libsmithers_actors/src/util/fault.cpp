#include "util/fault.hpp"

#include <smithers/errors.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <vector>

namespace smithers::util {

namespace {

enum class fault_action { fail, busy, full, exit };

struct rule {
  std::string point; // a name, a prefix ending in '*', or "*"
  long at = 0;       // the hit that triggers it, from 1
  fault_action action = fault_action::fail;
  long hits = 0;
};

struct schedule {
  std::mutex mtx;
  std::vector<rule> rules;
  std::atomic<bool> armed{false};
};

schedule& current() {
  static schedule s;
  return s;
}

[[noreturn]] void bad(const std::string& text, const std::string& why) {
  throw smithers_error(errc::invalid_argument, "fault schedule \"" + text + "\": " + why);
}

std::vector<rule> parse(const std::string& text) {
  std::vector<rule> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(pos, end - pos);
    pos = end + 1;
    if (item.empty()) continue;
    auto hash = item.find('#');
    auto eq = item.find('=', hash == std::string::npos ? 0 : hash);
    if (hash == std::string::npos || eq == std::string::npos || hash == 0)
      bad(text, "each rule is POINT#K=ACTION");
    rule r;
    r.point = item.substr(0, hash);
    std::string k = item.substr(hash + 1, eq - hash - 1);
    if (k.empty() || k.size() > 9 || k.find_first_not_of("0123456789") != std::string::npos ||
        std::stol(k) < 1)
      bad(text, "K must be a number from 1");
    r.at = std::stol(k);
    std::string a = item.substr(eq + 1);
    if (a == "fail")
      r.action = fault_action::fail;
    else if (a == "busy")
      r.action = fault_action::busy;
    else if (a == "full")
      r.action = fault_action::full;
    else if (a == "exit")
      r.action = fault_action::exit;
    else
      bad(text, "ACTION is fail, busy, full or exit");
    out.push_back(std::move(r));
  }
  return out;
}

bool matches(const std::string& pattern, std::string_view name) {
  if (pattern == "*") return true;
  if (!pattern.empty() && pattern.back() == '*')
    return name.substr(0, pattern.size() - 1) ==
           std::string_view{pattern}.substr(0, pattern.size() - 1);
  return name == pattern;
}

#ifdef SMITHERS_FAULTS
// The environment's schedule, read once, at the first point reached.
void arm_from_environment() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("SMITHERS_FAULTS");
    if (env && *env) arm_faults(env);
  });
}
#endif

} // namespace

void arm_faults(const std::string& text) {
  auto rules = parse(text);
  auto& s = current();
  std::lock_guard<std::mutex> lk(s.mtx);
  s.rules = std::move(rules);
  s.armed = !s.rules.empty();
}

#ifdef SMITHERS_FAULTS

bool faults_armed() {
  arm_from_environment();
  return current().armed.load(std::memory_order_relaxed);
}

void fault_point(std::string_view name) {
  if (!faults_armed()) return;
  auto& s = current();
  std::optional<fault_action> fire;
  {
    std::lock_guard<std::mutex> lk(s.mtx);
    for (auto& r : s.rules)
      if (matches(r.point, name) && ++r.hits == r.at && !fire) fire = r.action;
  }
  if (!fire) return;
  std::string where{name};
  // One line on stderr, so a driver knows the schedule fired in this
  // process (a failed write may be retried or end the run quietly).
  std::fprintf(stderr, "smithers: fault injected at %s\n", where.c_str());
  std::fflush(stderr);
  switch (*fire) {
  case fault_action::exit:
    std::_Exit(fault_exit_code);
  case fault_action::busy:
    throw smithers_error(errc::db_error, "database is locked (fault injected at " + where + ")");
  case fault_action::full:
    throw smithers_error(errc::db_error,
                         "database or disk is full (fault injected at " + where + ")");
  case fault_action::fail:
    break;
  }
  throw smithers_error(errc::db_error, "write failed (fault injected at " + where + ")");
}

#endif

} // namespace smithers::util
