// Events (SPEC §6): an append-only, per-run sequence of what happened.
// Each is persisted with its seq before subscribers see it.
#pragma once

#include <smithers/errors.hpp>

#include <cstdint>
#include <functional>
#include <string>

namespace smithers {

struct event {
  std::string type; // RunStarted, NodeFinished, ...
  std::string run_id;
  std::int64_t seq = 0; // 0, 1, 2, ... per run
  std::int64_t timestamp_ms = 0;
  json fields = json::object(); // type-specific fields

  /// {"type", "run_id", "seq", "timestamp_ms", ...fields}
  json to_json() const {
    json j = fields;
    j["type"] = type;
    j["run_id"] = run_id;
    j["seq"] = seq;
    j["timestamp_ms"] = timestamp_ms;
    return j;
  }

  static event from_json(const json& j) {
    event e;
    e.type = j.value("type", std::string{});
    e.run_id = j.value("run_id", std::string{});
    e.seq = j.value("seq", std::int64_t{0});
    e.timestamp_ms = j.value("timestamp_ms", std::int64_t{0});
    e.fields = j;
    for (const char* k : {"type", "run_id", "seq", "timestamp_ms"})
      e.fields.erase(k);
    return e;
  }
};

/// Called on an engine thread after the event is committed: keep it short.
using event_handler = std::function<void(const event&)>;

} // namespace smithers
