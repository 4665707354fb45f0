// Events (docs/reference.md#events): an append-only, per-run sequence of what happened.
// Each is persisted with its seq before subscribers see it.
#pragma once

#include <smithers/errors.hpp>

#include <cstdint>
#include <functional>
#include <string>

namespace smithers {

/// The event types of docs/reference.md#events, by name: code spells them through these.
namespace event_type {
inline constexpr const char* run_started = "RunStarted";
inline constexpr const char* run_status_changed = "RunStatusChanged";
inline constexpr const char* run_finished = "RunFinished";
inline constexpr const char* run_failed = "RunFailed";
inline constexpr const char* run_cancelled = "RunCancelled";
inline constexpr const char* run_continued_as_new = "RunContinuedAsNew";
inline constexpr const char* run_resumed = "RunResumed";
inline constexpr const char* frame_committed = "FrameCommitted";
inline constexpr const char* snapshot_captured = "SnapshotCaptured";
inline constexpr const char* node_pending = "NodePending";
inline constexpr const char* node_started = "NodeStarted";
inline constexpr const char* node_finished = "NodeFinished";
inline constexpr const char* node_failed = "NodeFailed";
inline constexpr const char* node_retrying = "NodeRetrying";
inline constexpr const char* node_cancelled = "NodeCancelled";
inline constexpr const char* node_skipped = "NodeSkipped";
inline constexpr const char* node_output = "NodeOutput";
inline constexpr const char* task_heartbeat = "TaskHeartbeat";
inline constexpr const char* task_heartbeat_timeout = "TaskHeartbeatTimeout";
inline constexpr const char* approval_requested = "ApprovalRequested";
inline constexpr const char* approval_decided = "ApprovalDecided";
inline constexpr const char* timer_scheduled = "TimerScheduled";
inline constexpr const char* timer_fired = "TimerFired";
inline constexpr const char* signal_received = "SignalReceived";
inline constexpr const char* loop_iteration_started = "LoopIterationStarted";
inline constexpr const char* loop_finished = "LoopFinished";
inline constexpr const char* cache_hit = "CacheHit";
inline constexpr const char* worker_joined = "WorkerJoined";
inline constexpr const char* worker_lost = "WorkerLost";
inline constexpr const char* agent_retry = "AgentRetry";
} // namespace event_type

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
