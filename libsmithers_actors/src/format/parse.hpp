// JSON workflow files (docs/workflow-format.md) -> workflow, with the JSON path of every
// problem. Nothing here runs anything.
#pragma once

#include "schema/problem.hpp"
#include <smithers/workflow.hpp>

#include <optional>

namespace smithers::spec {

struct parse_result {
  std::optional<workflow> wf; // set when there are no problems
  problems errors;
  std::string hash; // sha256 of the canonical document
};

/// Parses and validates a workflow document.
parse_result parse_workflow(const json& doc);

/// Reads, parses and validates a workflow file. Unreadable files and JSON
/// syntax errors are problems with an empty path (the message says where).
parse_result load_workflow_file(const std::string& path);

} // namespace smithers::spec
