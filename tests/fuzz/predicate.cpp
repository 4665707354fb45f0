// Fuzz target `predicate`: expr/predicate.hpp. The input is three JSON
// texts separated by NUL bytes: the predicate (as in a workflow file's `if`,
// `until` or `skip_if`), the run's input and the outputs ({node id: output}).
// The predicate is parsed with a workflow file's limits; the input must
// pass check_input_bounds and each output check_output_bounds, as the
// engine makes sure before a predicate ever reads them (else {} / left out).
//
// Oracle: no crash, only smithers_error escapes; problems serialize; for a
// predicate that passes check_predicate, evaluate agrees with the logic of
// its own combinators: not p == !p, all [p, p] == p, any [p, not p] holds,
// all [p, not p] does not (each when the wrapped predicate still passes).
#include "fuzz_support.hpp"

#include "expr/predicate.hpp"
#include "util/json_parse.hpp"

#include <smithers/limits.hpp>

#include <unordered_map>

using namespace smithers;

namespace {

bool passes(const json& p) {
  return spec::check_predicate(p, "root.if").empty();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parts = fuzz::split_parts(fuzz::as_text(data, size), 3);
  auto pred = util::parse_json(parts[0], {limits::max_workflow_depth}, nullptr);
  if (!pred) return 0;
  json input = json::object();
  if (auto in = util::parse_json(parts[1], {limits::max_input_depth + 1}, nullptr))
    if (!util::check_input_bounds(*in)) input = std::move(*in);
  std::unordered_map<std::string, json> outputs;
  if (auto outs = util::parse_json(parts[2], {limits::max_output_depth + 1}, nullptr);
      outs && outs->is_object())
    for (auto& [id, out] : outs->items())
      if (!util::check_output_bounds(out, limits::default_max_output_bytes)) outputs[id] = out;

  fuzz::guarded("predicate", [&] {
    auto ps = spec::check_predicate(*pred, "root.if");
    json list = json::array();
    for (const auto& p : ps)
      list.push_back({{"path", p.path}, {"message", p.message}});
    fuzz::dump_strict(list, "check_predicate problems");
    auto refs = spec::predicate_output_refs(*pred);
    for (const auto& r : refs)
      (void)spec::output_id_end(r);
    if (!ps.empty()) return;

    const bool r = spec::evaluate(*pred, input, outputs);
    const json neg = {{"not", *pred}};
    if (passes(neg))
      fuzz::require(spec::evaluate(neg, input, outputs) == !r, "not p != !p", pred->dump());
    const json both = {{"all", json::array({*pred, *pred})}};
    if (passes(both))
      fuzz::require(spec::evaluate(both, input, outputs) == r, "all [p, p] != p", pred->dump());
    const json either = {{"any", json::array({*pred, neg})}};
    if (passes(either))
      fuzz::require(spec::evaluate(either, input, outputs), "any [p, not p] is false",
                    pred->dump());
    const json contradiction = {{"all", json::array({*pred, neg})}};
    if (passes(contradiction))
      fuzz::require(!spec::evaluate(contradiction, input, outputs), "all [p, not p] is true",
                    pred->dump());
  });
  return 0;
}
