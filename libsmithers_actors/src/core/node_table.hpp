// The states a run has written for its nodes, and the frames built from
// them. Kept per task at its index in the current plan — flat arrays rather
// than maps keyed by node, whose every lookup is a few cache misses once a
// run has 100,000 tasks — and by key for nodes a re-render dropped (they
// stay in keyframes and keep their attempt count should they come back).
//
// Every batch that changes node states (or the tree) carries a frame: the
// tree when it changed and a snapshot of node states — all of them in a
// keyframe, else only what changed since the previous frame. A keyframe is
// due when the deltas since the last one add up to a keyframe's size, so
// snapshot storage stays linear in the number of state changes.
#pragma once

#include "scheduler/plan.hpp"

#include <smithers/node_key.hpp>

#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace smithers::core {

template <class T> using key_map = std::unordered_map<node_key, T, node_key_hash>;

struct task_slot {
  std::int64_t attempts = 0;     // attempts started
  const char* written = nullptr; // state as last written (nullptr: none yet)
  bool in_delta = false;         // changed since the last frame
};

/// A frame's snapshot, as JSON text: {"states":{id: state, ...}[, "input": ...]}.
struct frame_snapshot {
  std::string text;
  bool keyframe = false;
  std::size_t nodes = 0;   // states in it
  std::size_t changes = 0; // states changed since the previous frame
};

class node_table {
public:
  /// A task's slot: at its index in the plan, or by key if a re-render
  /// dropped it (t < 0).
  task_slot& slot(sched::index t, const node_key& k) {
    return t >= 0 ? slots_[static_cast<std::size_t>(t)] : dropped_[k];
  }
  const task_slot& at(sched::index t) const { return slots_[static_cast<std::size_t>(t)]; }

  /// Records the state written for a node, for the next frame.
  void note_state(sched::index t, const node_key& k, const char* state);
  /// Sets the state as written without putting it in the next frame (as
  /// stored already, on a resume).
  void set_written(task_slot& sl, const char* state);

  /// Moves the slots to a new plan: a task keeps its slot by key, from the
  /// old plan or from the dropped ones; old tasks missing from the new plan
  /// are dropped. `returning[t]` is set for new-plan tasks that come back
  /// from the dropped set; `carried[t]` for tasks in both plans.
  void replan(const sched::plan* old, const sched::plan& next, std::vector<sched::index>& old_index,
              std::vector<char>& returning);

  std::size_t size() const { return slots_.size(); }
  const key_map<task_slot>& dropped() const { return dropped_; }
  bool has_changes() const { return !delta_.empty() || !dropped_delta_.empty(); }

  /// The frame due now, or nullopt when nothing changed (and the tree did
  /// not): clears the delta.
  /// Loop states go with it: all in a keyframe, else those in `loops_changed`.
  std::optional<frame_snapshot> take_frame(
      const sched::plan& p, const json& input, bool tree_changed,
      const std::unordered_map<std::string, loop_state>& loops = {},
      const std::vector<std::string>& loops_changed = {});

  static bool is_pending(const task_slot& sl);

private:
  std::vector<task_slot> slots_; // by task index in the plan
  key_map<task_slot> dropped_;
  std::vector<sched::index> delta_;
  std::vector<node_key> dropped_delta_;
  std::size_t written_count_ = 0;
  std::size_t delta_since_key_ = 0;
  bool wrote_keyframe_ = false;
};

} // namespace smithers::core
