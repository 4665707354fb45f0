// The scheduler: which tasks of a plan may start now. Pure and incremental:
// every state change costs O(depth + log width), never O(tasks), so a run's
// total scheduling work grows linearly with its size.
//
// Rules:
//  - a sequence runs its children one after another; a child is done when it
//    finished, was skipped, or failed with continue_on_fail;
//  - a parallel group runs its children together, at most max_concurrency of
//    its tasks in flight (0: unlimited); the run has its own limit too;
//  - a task also waits for every task in its needs to finish; a need that
//    ends skipped or failed (with continue_on_fail) skips the task;
//  - a failure without continue_on_fail stops new starts: the run fails once
//    the tasks in flight have ended;
//  - a branch or for_each node in a plan is undecided (render turns decided
//    ones into groups): never done, so what follows it waits;
//  - a loop runs its body (its one child, at the current iteration) and is
//    done when the body is and the loop has ended; a body done before that
//    is reported (take_loops_ready) for the run core to start the next
//    iteration or end the loop, after which the tree is rendered again.
#pragma once

#include "scheduler/plan.hpp"

#include <smithers/status.hpp>

#include <array>
#include <set>
#include <vector>

namespace smithers::sched {

enum class outcome {
  running,  // tasks in flight, runnable or waiting for a retry
  finished, // every node done
  failed,   // a task failed without continue_on_fail and nothing is in flight
  stuck,    // nothing can ever start (needs that can never be met)
};

const char* to_string(outcome o);

class scheduler {
public:
  /// `initial` has one state per task (default: all pending). in_progress
  /// tasks count as in flight. run_max_concurrency 0: unlimited.
  scheduler(const plan& p, std::int64_t run_max_concurrency, std::vector<node_state> initial = {});

  /// Tasks that may start now, in document order, within every concurrency
  /// limit. They become in_progress.
  std::vector<index> take_runnable();

  /// An in_progress task ended: finished, failed, skipped or cancelled.
  void complete(index t, node_state s);
  /// A task that is not in flight (pending) is skipped (e.g. skip_if).
  void skip(index t);
  /// An in_progress task waits for a retry: it leaves the flight and does not
  /// run until release().
  void defer(index t);
  /// A pending task waits (a retry's backoff that survived a restart): it
  /// does not run until release().
  void hold(index t);
  /// A deferred or held task becomes runnable again when its needs allow.
  void release(index t);

  /// Tasks skipped because a need did not finish, since the last call.
  std::vector<index> take_auto_skipped();
  /// Loops (plan::loops indices) whose body is done but which have not
  /// ended, since the last call. The run counts as running while any wait.
  std::vector<index> take_loops_ready();
  bool has_loops_ready() const { return !loops_ready_.empty(); }
  /// A task could start now but for a concurrency limit.
  bool has_runnable() const { return !runnable_.empty() && runnable_[0] > 0; }

  outcome status() const;
  /// Tasks that failed without continue_on_fail.
  const std::vector<index>& failed_tasks() const { return failed_; }
  /// Pending tasks that wait on needs that can never be met (when stuck).
  std::vector<index> blocked_tasks() const;

  node_state state(index t) const { return state_[t]; }
  std::size_t count(node_state s) const { return counts_[static_cast<int>(s)]; }
  std::size_t in_flight() const { return in_flight_; }
  std::size_t deferred() const { return deferred_; }
  const plan& get_plan() const { return plan_; }

private:
  bool done_state(index t, node_state s) const;
  void set_state(index t, node_state s);
  void activate(index n);
  void mark_runnable(index t);
  void unmark_runnable(index t);
  void adjust_runnable(index n, int delta);
  void node_done(index n);
  void task_ended(index t, node_state s);
  void skip_dependents(index t);
  void flight(index t, int delta);
  std::size_t pull(index n, std::size_t budget, std::vector<index>& out);

  const plan& plan_;
  std::int64_t run_max_;
  std::vector<node_state> state_;   // per task
  std::vector<std::int32_t> unmet_; // per task: needs not yet finished
  std::vector<char> active_;        // per node: its parent lets it run
  std::vector<char> complete_;      // per node
  std::vector<std::int32_t> done_children_;
  std::vector<std::int32_t> cursor_;            // sequences: first child not done
  std::vector<std::int32_t> runnable_;          // per node: runnable tasks below
  std::vector<std::int32_t> flying_;            // per node: tasks in flight below
  std::vector<std::set<index>> ready_children_; // per node: positions with runnable > 0
  std::vector<char> is_runnable_;               // per task
  std::vector<char> held_;                      // per task: waiting for a retry
  std::array<std::size_t, 9> counts_{};
  std::size_t in_flight_ = 0;
  std::size_t deferred_ = 0;
  std::vector<index> failed_;
  std::vector<index> auto_skipped_;
  std::vector<index> loops_ready_;
};

} // namespace smithers::sched
