// Git worktrees for command and agent tasks (docs/agents.md, "Worktrees"):
// parallel agents edit isolated checkouts of one repository. Created with
// the git command line (no library for it here), never removed: the
// worktree and its branch stay for a person to review.
#pragma once

#include "executors/task_job.hpp"

#include <smithers/errors.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <string>

namespace smithers::executors {

struct worktree_request {
  std::string repo;   // a directory inside the repository (the task's cwd)
  std::string path;   // where the worktree goes; a relative one is under `repo`
  std::string branch; // checked out in it: created from `base` if it does not exist
  std::string base;   // "" : HEAD
};

struct worktree_result {
  std::string path;             // absolute: the task runs there
  bool created = false;         // false: an existing worktree of the repository was reused
  std::optional<error> failure; // WORKTREE_CREATE_FAILED
};

/// Creates the worktree, or reuses the one at `path` if it is a worktree
/// of the same repository. Refuses (WORKTREE_CREATE_FAILED, with git's own
/// message in details.git) a `repo` outside a git repository, a branch name
/// git refuses, an unknown base, a path that exists and is something else,
/// a branch checked out elsewhere. Creations in this process are serialized
/// (git locks the repository's files). Blocking: call it from a task thread.
worktree_result ensure_worktree(const worktree_request& req,
                                const std::shared_ptr<std::atomic<bool>>& cancel);

/// For a request with a worktree: ensures it and points `cwd` at it,
/// recording {"worktree": {"path", "branch", "created"}} in `meta`. The
/// failure, if any.
std::optional<error> enter_worktree(const task_request& req,
                                    const std::shared_ptr<std::atomic<bool>>& cancel,
                                    std::string& cwd, json& meta);

} // namespace smithers::executors
