// Render: evaluate a workflow against the run's state into a tree, and give
// the tree a canonical JSON form and hash (stored as the frame).
#pragma once

#include <smithers/workflow.hpp>

#include <memory>
#include <string>

namespace smithers {

struct rendered_tree {
  /// A static workflow's root is shared with the workflow, not copied.
  std::shared_ptr<const node> root;
  /// The canonical JSON, serialized once: kept as text because a large tree
  /// as a json value costs several times its size in memory.
  std::shared_ptr<const std::string> canonical;
  std::string hash;
};

/// Calls the workflow's build function (or takes its static root) and
/// canonicalizes the result. Exceptions from a build function propagate.
rendered_tree render(const std::shared_ptr<const workflow>& wf, const render_context& ctx);

/// Canonical JSON of a tree: kinds, ids, options; callables appear as
/// "<inline>" since code has no JSON form. The text is what json::dump()
/// writes for that object (compact, keys sorted); it is what the tree's hash
/// is taken of, so it must not change between versions.
std::string canonical_text(const node& root);
json canonical_tree(const node& root); // canonical_text, parsed

} // namespace smithers
