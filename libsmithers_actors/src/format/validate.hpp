// Semantic checks shared by JSON and C++ workflows: ids, needs, outputs,
// schemas, templates, predicates, option ranges. Paths follow the JSON file
// layout ("root.sequence[1].parallel[0].needs[0]") so both kinds read alike.
#pragma once

#include <optional>
#include <string_view>

#include "schema/problem.hpp"
#include <smithers/workflow.hpp>

namespace smithers::spec {

/// Problems of a rendered tree in the context of its workflow.
problems validate_tree(const workflow& wf, const node& root);

/// Problems of the workflow-level fields (input schema, output schemas,
/// max_concurrency) and, for static workflows, of the tree.
problems validate_workflow(const workflow& wf);

/// The JSON path of a child of `parent` at index i: "<parent>.<kind>[i]".
std::string child_node_path(const std::string& parent, node_kind parent_kind, std::size_t i);

} // namespace smithers::spec
