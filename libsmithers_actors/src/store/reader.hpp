// Read queries for the CLI and for starting/resuming runs. Readers use their
// own connection (never the persistence actor's).
#pragma once

#include "store/database.hpp"
#include "store/rows.hpp"

#include <optional>
#include <unordered_map>
#include <vector>

namespace smithers::store {

/// What another process asked of a run's owner (reader::owner_requests).
struct owner_request {
  std::string run_id;
  bool cancel = false;
  std::string handover_to; // non-empty: release the run to this resumer
};

class reader {
public:
  explicit reader(database& db) : db_(db) {}

  std::optional<run_row> run(const std::string& run_id) const;
  bool run_exists(const std::string& run_id) const;
  /// Newest first; empty status = all.
  std::vector<run_row> runs(const std::string& status = "", std::size_t limit = 1000) const;
  /// How many runs there are (with that status; empty = all).
  std::size_t run_count(const std::string& status = "") const;
  /// The run's newest frame number, nullopt before its first frame.
  std::optional<std::int64_t> last_frame(const std::string& run_id) const;
  /// PRAGMA data_version: changes when another connection commits.
  std::int64_t data_version() const;
  /// Newest first, filtered by status and workflow name (empty = any),
  /// `offset` rows skipped.
  std::vector<run_row> runs_page(const std::string& status, const std::string& workflow,
                                 std::size_t limit, std::size_t offset) const;
  std::size_t run_count(const std::string& status, const std::string& workflow) const;
  /// Runs whose row changed at or after `since_ms` (updated_ms), oldest
  /// change first, at most `limit`.
  std::vector<run_row> runs_updated_since(std::int64_t since_ms, std::size_t limit) const;
  /// Ordered by (node_id, iteration) in insertion order of first appearance.
  std::vector<node_row> nodes(const std::string& run_id) const;
  /// Ordered by node, iteration, attempt.
  std::vector<attempt_row> attempts(const std::string& run_id) const;
  /// Loop states, by loop instance id.
  std::vector<loop_row> loops(const std::string& run_id) const;
  /// The task cache of a workflow: key -> output.
  std::unordered_map<std::string, json> cache_entries(const std::string& workflow) const;
  /// Deletes the cache entries of `workflow` (every entry when empty);
  /// returns how many. Needs a writable connection.
  std::int64_t clear_cache(const std::string& workflow) const;
  /// Per node and iteration, the output of its last finished attempt.
  std::vector<output_row> outputs(const std::string& run_id) const;
  /// Events with seq > after_seq, ascending, at most `limit`.
  std::vector<event_row> events(const std::string& run_id, std::int64_t after_seq = -1,
                                std::size_t limit = 100000) const;
  /// Every frame with its tree and snapshot (heavy: for tests and tools).
  std::vector<frame_row> frames(const std::string& run_id) const;
  /// Every frame, light: for timelines.
  std::vector<frame_summary> frame_summaries(const std::string& run_id) const;
  /// Every frame's node states ({node: state}) in frame order: all nodes in
  /// a keyframe, the changed ones in a delta.
  std::vector<std::pair<std::int64_t, json>> frame_states(const std::string& run_id) const;
  /// The tree stored under a hash (null when unknown).
  json tree(const std::string& hash) const;
  /// The run as it stood at a frame: {"frame_no", "tree_hash", "states":
  /// {node: state}, "loops": {loop: {"iteration", "done"}}, "input",
  /// "outputs": {node: output of finished nodes}},
  /// rebuilt from the nearest keyframe and the deltas after it. Null when
  /// the frame does not exist.
  json snapshot_at(const std::string& run_id, std::int64_t frame_no) const;
  /// Runs forked from this one, oldest first.
  std::vector<run_row> children(const std::string& run_id) const;
  /// Runs of `owner_id` that are not over and have a cancellation or a
  /// handover request.
  std::vector<owner_request> owner_requests(const std::string& owner_id) const;
  /// What the run's nodes wait for (and waited for), by node.
  std::vector<wait_row> waits(const std::string& run_id) const;
  /// Decisions and signals not consumed yet, oldest first.
  std::vector<inbox_row> open_inbox(const std::string& run_id) const;
  /// How many signals of the run no node has taken yet.
  std::size_t open_signal_count(const std::string& run_id) const;
  /// The same, for every run `owner_id` drives.
  std::vector<inbox_row> open_inbox_of_owner(const std::string& owner_id) const;
  /// Runs that wait (waiting-*) with something arrived for them or a
  /// deadline passed by `now_ms`: a decision for a waiting node, a signal a
  /// waiting node takes, a timer or signal timeout due. Oldest first.
  std::vector<std::string> ready_waiting_runs(std::int64_t now_ms) const;
  /// Whether `run_id` is one of those.
  bool wait_ready(const std::string& run_id, std::int64_t now_ms) const;
  std::int64_t frame_count(const std::string& run_id) const;
  /// The highest event seq of a run, -1 when it has none.
  std::int64_t max_event_seq(const std::string& run_id) const;

  /// Event chunks and frames are keyed run_no << 32 | seq (frame_no): a
  /// run's rows are the keys [base, base + key_span).
  static constexpr std::int64_t key_span = std::int64_t{1} << 32;

private:
  /// The run's key base; nullopt: no such run.
  std::optional<std::int64_t> key_base(const std::string& run_id) const;

  database& db_;
};

} // namespace smithers::store
