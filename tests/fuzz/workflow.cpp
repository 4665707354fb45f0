// Fuzz target `workflow`: a workflow file's bytes, read as the CLI reads
// them (spec::load_workflow_file): util::parse_json with the workflow file's
// limits (depth limits::max_workflow_depth, size limits::max_workflow_bytes),
// then spec::parse_workflow (parse and validate). A workflow that passes
// then goes where `smithers validate` and `smithers run` take it before
// anything runs: validate_run, the canonical tree, the first render and the
// compiled plan.
//
// Oracle: no crash, hang or leak (the sanitizers); only smithers_error
// escapes; a result has a workflow exactly when it has no problems (and a
// hash then); every problem and error serializes as JSON (the CLI prints
// them); the canonical text is the canonical tree's dump.
#include "fuzz_support.hpp"

#include "core/run_validation.hpp"
#include "format/parse.hpp"
#include "scheduler/plan.hpp"
#include "util/json_parse.hpp"
#include "workflow/render.hpp"

#include <smithers/engine.hpp>
#include <smithers/limits.hpp>

#include <memory>

using namespace smithers;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = fuzz::as_text(data, size);
  util::json_parse_error err;
  auto doc = util::parse_json(text, {limits::max_workflow_depth, limits::max_workflow_bytes}, &err);
  if (!doc) {
    fuzz::require(err.byte <= text.size(), "parse error byte beyond the text");
    fuzz::require(util::is_valid_utf8(err.message) && util::is_valid_utf8(err.path),
                  "parse error text is not valid UTF-8", err.message);
    fuzz::check_error(util::to_error(err, errc::invalid_workflow, "workflow"));
    return 0;
  }
  fuzz::guarded("parse_workflow", [&] {
    auto res = spec::parse_workflow(*doc);
    fuzz::require(res.wf.has_value() == res.errors.empty(), "a workflow and problems, or neither");
    // What load_workflow_or_throw prints for a refused file.
    json list = json::array();
    for (const auto& p : res.errors)
      list.push_back({{"path", p.path}, {"message", p.message}});
    fuzz::dump_strict(list, "workflow problems");
    (void)spec::join(res.errors);
    if (!res.wf) return;
    fuzz::require(res.hash.size() == 64, "a parsed workflow without a sha256", res.hash);
    auto wf = std::make_shared<const workflow>(std::move(*res.wf));

    const std::string canonical = canonical_text(wf->root);
    fuzz::require(canonical_tree(wf->root).dump() == canonical,
                  "canonical text is not its tree's dump", canonical);

    // smithers validate (no --input), then run with an empty input.
    run_options opts;
    auto any_compute = [](const std::string&) { return true; };
    validate_run(*wf, opts, any_compute, false);
    fuzz::guarded("validate_run with input", [&] { validate_run(*wf, opts, any_compute, true); });

    const json input = json::object();
    const std::unordered_map<std::string, json> outputs;
    auto tree = core::first_render(wf, "fuzz-run", input, outputs);
    fuzz::require(tree.root != nullptr && tree.canonical != nullptr, "a render without a tree");
    auto plan = sched::compile(*tree.root);
    fuzz::require(plan.task_node.size() == plan.task_count() &&
                      plan.needs.size() == plan.task_count(),
                  "a plan whose task arrays disagree");
  });
  return 0;
}
