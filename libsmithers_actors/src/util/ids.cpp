#include "util/ids.hpp"

#include "util/clock.hpp"

#include <smithers/limits.hpp>

#include <cctype>
#include <random>

namespace smithers::util {

std::optional<error> check_run_id(std::string_view id) {
  if (id.empty()) return error{errc::invalid_run_id, "run id must not be empty"};
  if (id.size() > limits::max_run_id_length)
    return error{errc::invalid_run_id, "run id is " + std::to_string(id.size()) +
                                           " characters long; the limit is " +
                                           std::to_string(limits::max_run_id_length)};
  for (std::size_t i = 0; i < id.size(); ++i) {
    char c = id[i];
    // '~' numbers the runs of a continue-as-new chain ("a~2"); never first,
    // where a shell would read it as a home directory.
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-' || (c == '~' && i > 0);
    if (!ok)
      return error{errc::invalid_run_id,
                   std::string{c == '~' ? "run id starts with '~'" : "run id has a character outside [A-Za-z0-9._:~-]"} +
                       " at position " + std::to_string(i)};
  }
  return std::nullopt;
}

std::optional<error> check_new_run_id(std::string_view id) {
  if (auto err = check_run_id(id)) return err;
  if (auto t = id.find('~'); t != std::string_view::npos)
    return error{errc::invalid_run_id, "run id has '~' at position " + std::to_string(t) +
                                           ": '~' is kept for the runs of a continue-as-new "
                                           "chain (<run id>~1, ~2, ...)"};
  return std::nullopt;
}

bool valid_node_id(std::string_view id) {
  if (id.empty() || id.size() > max_node_id_length) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool valid_agent_id(std::string_view id) {
  if (id.empty() || id.size() > max_node_id_length) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

std::string random_hex(std::size_t bytes) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  for (std::size_t i = 0; i < bytes; ++i) {
    auto b = static_cast<unsigned>(rng() & 0xff);
    out.push_back(hex[b >> 4]);
    out.push_back(hex[b & 0xf]);
  }
  return out;
}

std::string new_run_id() {
  return "run-" + std::to_string(now_ms()) + "-" + random_hex(4);
}

std::optional<std::string> check_signal_name(std::string_view name) {
  if (name.empty() || name.size() > limits::max_signal_name_bytes)
    return "a signal name is 1 to " + std::to_string(limits::max_signal_name_bytes) + " bytes";
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' ||
          c == '-' || c == '/'))
      return std::string{"a signal name may hold letters, digits and . _ : - / only"};
  return std::nullopt;
}

} // namespace smithers::util
