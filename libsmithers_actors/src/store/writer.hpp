// Typed write commands and the writer that applies a batch of them in one
// transaction (BEGIN IMMEDIATE ... COMMIT) with cached prepared statements.
// This is the only code that writes run state.
#pragma once

#include "store/database.hpp"
#include "store/rows.hpp"

#include <smithers/node_key.hpp>

#include <memory>
#include <variant>
#include <vector>

namespace smithers::store {

struct insert_run {
  run_row row;
};
struct update_run_status {
  std::string run_id;
  std::string status;
  json error; // null clears
  std::int64_t updated_ms = 0;
  std::optional<std::int64_t> finished_ms;
};
struct upsert_node {
  node_row row;
}; // insert or replace by key
struct insert_attempt {
  attempt_row row;
};
/// Ends an attempt; with `output`, the output is stored on the attempt by the
/// same statement (an output is never visible without its finished attempt).
struct finish_attempt {
  std::string run_id;
  attempt_key key; // (node id, iteration), attempt
  std::string state; // finished, failed, cancelled
  std::int64_t finished_ms = 0;
  json error; // null on success
  std::optional<json> output;
  json meta; // merged into the attempt's meta (RFC 7396 merge patch); null: kept as it is
};
struct record_heartbeat {
  std::string run_id;
  attempt_key key;
  std::int64_t heartbeat_ms = 0;
  json data; // null: keep the previous data
  bool has_data = false;
};
/// One event (row.payload: its fields), stored as a chunk of one.
struct append_event {
  event_row row;
};
/// Events seq first_seq .. first_seq + count - 1 of one run, stored as one
/// chunk: `text` is their JSON array, [[type, timestamp_ms, {fields}], ...]
/// (entries written by append_chunk_entry). A chunk that overlaps events
/// already stored fails the batch.
struct append_events {
  std::string run_id;
  std::int64_t first_seq = 0;
  std::int64_t count = 0;
  std::string text;
};
/// The owner's liveness heartbeat; never moves the time backwards, and only
/// the current owner's counts (a run taken over by force keeps its new one).
struct touch_run {
  std::string run_id;
  std::string owner_id;
  std::int64_t heartbeat_ms = 0;
};
/// A durable cancellation request, noticed by the owning process.
struct request_cancel {
  std::string run_id;
};
/// Takes a run over: compare-and-set on (owner_id, heartbeat_ms), so of two
/// resumers exactly one wins; the loser's batch fails with
/// RUN_RESUME_CLAIM_FAILED and writes nothing.
struct claim_run {
  std::string run_id;
  std::string expected_owner_id;
  std::int64_t expected_heartbeat_ms = 0;
  std::string owner_id;
  std::int64_t owner_pid = 0;
  std::int64_t now_ms = 0;
};
/// A forced resume asks the live owner (`owner_id`) to stop driving the run
/// and release it to `requester_id`; fails (RUN_RESUME_CLAIM_FAILED) when the
/// run has another owner by now, or none, or has ended.
struct request_handover {
  std::string run_id;
  std::string owner_id;
  std::string requester_id;
};
/// Takes a handover request back (the owner did not release in time).
struct withdraw_handover {
  std::string run_id;
  std::string requester_id;
};
/// The owner lets go of a run it stopped driving (a handover): nobody owns
/// it until a resumer claims it. Only the current owner's release counts.
struct release_run {
  std::string run_id;
  std::string owner_id;
  std::int64_t now_ms = 0;
};
/// Frames go through this one command so their storage format can change
/// without touching callers: the tree is stored once per hash, the frame row
/// references it and carries its snapshot (keyframe or delta).
struct store_frame {
  frame_row row;
  /// The tree as canonical JSON text, shared with the run (written instead
  /// of row.tree when set).
  std::shared_ptr<const std::string> tree_text = nullptr;
  /// The snapshot as JSON text (written instead of row.snapshot when set):
  /// the supervisor writes it directly rather than building a JSON object
  /// of every node for a keyframe.
  std::string snapshot_text = {};
};
/// Merges into an attempt's meta (e.g. the process group of a command).
struct set_attempt_meta {
  std::string run_id;
  attempt_key key;
  json meta;
};
/// Stores a finished output under its cache key (a later one wins).
struct put_cache {
  std::string key;
  std::string workflow;
  std::string node_id;
  json output;
  std::string run_id;
  std::int64_t at_ms = 0;
};
/// Records the worker (HOST:PORT) an attempt was sent to.
struct set_attempt_worker {
  std::string run_id;
  attempt_key key;
  std::string worker;
};
/// Nodes entering a run: each gets a pending node row (attempts 0) and a
/// NodePending event, seq first_seq + i (stored in chunks). One command
/// instead of two per node keeps announcing a large tree small in memory.
struct pending_node {
  node_key key;
  std::string label;
  std::string kind;
};
struct add_pending_nodes {
  std::string run_id;
  std::shared_ptr<const std::vector<pending_node>> nodes;
  std::int64_t first_seq = 0;
  std::int64_t at_ms = 0;
};

/// A loop's iteration or end.
struct upsert_loop {
  loop_row row;
};
/// Continue-as-new: the successor run, a copy of the parent's row (workflow,
/// input, config, working directory) with its lineage (parent_run_id,
/// config.continued_from), `running` and owned by nobody, with a fresh
/// heartbeat: whoever follows the chain claims it at once; `supervise`
/// takes it once that heartbeat is stale (nobody followed). Its carried
/// nodes, loops and RunStarted go in the same batch as separate commands.
struct continue_run {
  std::string parent_run_id;
  std::string run_id;
  std::int64_t now_ms = 0;
};

/// What a node waits for, or how its wait ended (by key).
struct upsert_wait {
  wait_row row;
};
/// A decision or signal taken by the node that it resolved (consumed_by).
struct consume_inbox {
  std::int64_t id = 0;
  std::string consumed_by;
  std::int64_t consumed_ms = 0;
};
/// A decision or signal for a run (any process). An approval is stored only
/// while its node waits for one and has none yet: otherwise the batch fails
/// with INVALID_ARGUMENT (two deciders at once: exactly one wins).
struct insert_inbox {
  inbox_row row;
};
/// The run ended while nodes waited: their waits end `cancelled`, so nothing
/// asks for a decision on an ended run, and decisions not taken yet are
/// voided (consumed_by "cancelled"): a retry asks again.
struct cancel_waits {
  std::string run_id;
  std::int64_t at_ms = 0;
};
/// A run's status while it goes on (running, waiting-*): no finish time.
struct set_run_status {
  std::string run_id;
  std::string status;
  std::int64_t updated_ms = 0;
};

using command = std::variant<insert_run, update_run_status, upsert_node, insert_attempt,
                             finish_attempt, record_heartbeat, append_event, append_events,
                             store_frame, touch_run, request_cancel, claim_run, set_attempt_meta,
                             add_pending_nodes, request_handover, withdraw_handover, release_run,
                             upsert_loop, continue_run, upsert_wait, consume_inbox, insert_inbox,
                             set_run_status, cancel_waits, set_attempt_worker, put_cache>;

/// Commands committed together, in order, in one transaction.
struct write_batch {
  std::vector<command> commands;
};

/// Appends one event's chunk entry, `["type",timestamp_ms,{fields}]`, to
/// `out` (the caller writes the array's brackets and commas).
void append_chunk_entry(std::string& out, const std::string& type, std::int64_t at_ms,
                        const json& fields);

class writer {
public:
  explicit writer(database& db);
  ~writer();
  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;

  /// Applies all commands in order in one transaction; on any failure rolls
  /// back and throws smithers_error(DB_ERROR). Nothing is half-written.
  void apply(const std::vector<command>& batch);
  /// Several batches, in order, in one transaction (group commit) — without
  /// copying them into one.
  void apply_all(const std::vector<const std::vector<command>*>& batches);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace smithers::store
