// Typed rows of the SQLite store (see docs/architecture.md, "The store").
#pragma once

#include <smithers/errors.hpp>
#include <smithers/node_key.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace smithers::store {

struct run_row {
  std::string run_id;
  std::string workflow_name;
  std::string status; // run status (docs/reference.md#states)
  json input = json::object();
  json config = json::object(); // max_concurrency, workflow path, ...
  std::string workflow_hash;    // sha256 of the workflow file / canonical tree
  std::string workflow_path;
  std::string vcs_revision;
  std::string owner_id; // '' when nobody drives it (a fork not started, a released run)
  std::int64_t owner_pid = 0;
  std::int64_t heartbeat_ms = 0;
  bool cancel_requested = false;
  std::string cwd;         // where commands run (recorded at start; '' before v6)
  std::string handover_to; // owner id of a forced resumer waiting for a release
  std::string parent_run_id;
  json error; // null or {"code","message","details"}
  std::int64_t created_ms = 0;
  std::int64_t updated_ms = 0;
  std::optional<std::int64_t> finished_ms;
};

struct node_row {
  std::string run_id;
  std::string node_id;
  std::int64_t iteration = 0;
  std::string state;         // node state (docs/reference.md#states)
  std::int64_t attempts = 0; // attempts started so far
  std::string label;
  std::string kind; // "value", "command", "compute"
  std::int64_t updated_ms = 0;
};

struct attempt_row {
  std::string run_id;
  std::string node_id;
  std::int64_t iteration = 0;
  std::int64_t attempt = 1;
  std::string state; // in-progress, finished, failed, cancelled
  std::int64_t started_ms = 0;
  std::optional<std::int64_t> finished_ms;
  std::optional<std::int64_t> heartbeat_ms;
  json heartbeat; // last heartbeat data, null when none
  json error;     // null or error JSON
  json meta = json::object();
  bool cached = false;
  std::optional<json> output; // a finished attempt's validated output
  std::string worker;         // HOST:PORT of the worker it ran on; "" in the owner
};

/// A loop instance's state: "running" (at `iteration`), "finished" or
/// "failed" (LOOP_MAX_REACHED; `iteration` its last).
struct loop_row {
  std::string run_id;
  std::string loop_id;
  std::int64_t iteration = 0;
  std::string state;
  std::int64_t updated_ms = 0;
};

/// What a node waits for (the waits table).
struct wait_row {
  std::string run_id;
  node_key key;
  std::string kind;  // approval | gate | timer | signal
  std::string state; // waiting | approved | denied | fired | received | timed-out | cancelled
  std::string name;  // signal
  std::int64_t attempt = 0;
  std::int64_t since_ms = 0;
  std::optional<std::int64_t> deadline_ms;
  json details; // approval: {"title", "summary", "on_deny"}
  std::int64_t updated_ms = 0;
};

/// What arrived for a run (the inbox table): a decision or a signal.
struct inbox_row {
  std::int64_t id = 0;
  std::string run_id;
  std::string kind; // approval | signal
  node_key key;     // approval
  std::string name; // signal
  json payload;     // approval: {"approved", "by", "note", "decided_ms"}; signal: its data
  std::int64_t created_ms = 0;
};

struct output_row {
  std::string run_id;
  std::string node_id;
  std::int64_t iteration = 0;
  json value;
};

struct event_row {
  std::string run_id;
  std::int64_t seq = 0;
  std::string type;
  std::int64_t timestamp_ms = 0;
  /// Written: the event's own fields (the columns above are not repeated,
  /// which keeps events small). Read: the whole event object, the columns
  /// merged back in.
  json payload;
};

struct frame_row {
  std::string run_id;
  std::int64_t frame_no = 0;
  std::string tree_hash;
  json tree; // canonical rendered tree; null: already stored
  std::int64_t created_ms = 0;
  bool keyframe = true; // snapshot holds every node (and the input)
  json snapshot;        // {"states": {node: state}, "input": ...}
};

/// A frame without its tree and snapshot, for listings.
struct frame_summary {
  std::int64_t frame_no = 0;
  std::string tree_hash;
  std::int64_t created_ms = 0;
  bool keyframe = true;
  std::int64_t changes = 0; // node states in the snapshot
};

} // namespace smithers::store
