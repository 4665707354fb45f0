// Render: evaluate a workflow against the run's state into a tree, and give
// the tree a canonical JSON form and hash (stored as the frame).
#pragma once

#include <smithers/workflow.hpp>

#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

namespace smithers {

struct rendered_tree {
  /// What runs: groups and tasks only, control flow decided. A static
  /// workflow's root without control flow is shared with the workflow, not
  /// copied.
  std::shared_ptr<const node> root;
  /// What the workflow (or its build function) gave, control flow
  /// included: what validation checks. The same as root without control flow.
  std::shared_ptr<const node> source;
  /// Ids of branches that are undecided: a node their predicate reads has
  /// not ended. Nothing of theirs is mounted.
  std::vector<std::string> undecided;
  /// Whether the source has control flow: such a tree is rendered again
  /// whenever a node it reads ends, static or not.
  bool control = false;
  /// Ids of the nodes control flow reads (branch predicates, for_each
  /// items): when one of them ends, a decision may change.
  std::unordered_set<std::string> control_reads;
  /// Control flow in a for_each body reads the body's templated ids
  /// ("t-{{f}}.ok"): any node that ends may decide it.
  bool reads_any = false;
  /// The canonical JSON, serialized once: kept as text because a large tree
  /// as a json value costs several times its size in memory.
  std::shared_ptr<const std::string> canonical;
  std::string hash;
};

/// Calls the workflow's build function (or takes its static root), decides
/// its control flow against the context, and canonicalizes the result.
/// Exceptions from a build function propagate.
rendered_tree render(const std::shared_ptr<const workflow>& wf, const render_context& ctx);

/// Canonical JSON of a tree: kinds, ids, options; callables appear as
/// "<inline>" since code has no JSON form. The text is what json::dump()
/// writes for that object (compact, keys sorted); it is what the tree's hash
/// is taken of, so it must not change between versions.
std::string canonical_text(const node& root);
json canonical_tree(const node& root); // canonical_text, parsed

} // namespace smithers
