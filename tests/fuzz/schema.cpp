// Fuzz target `schema`: our JSON Schema subset (schema/schema.hpp). The
// input is a schema and an instance, two JSON texts separated by a NUL byte
// ("{\"type\": \"object\"}\0{\"a\": 1}"). The schema is parsed as a workflow
// file's JSON is (depth limits::max_workflow_depth), the instance as a
// task's output is (depth limits::max_output_depth); then check_schema, and
// for a schema that passes, validate.
//
// Oracle: no crash (deep schemas and values included), only smithers_error
// escapes; validate stops at max_problems and finds a problem with any
// limit exactly when it finds one with another; problems serialize as JSON;
// compare_numbers is reflexive and antisymmetric; utf8_length never
// exceeds the byte count; the agent contract (the schema in a prompt)
// serializes.
#include "fuzz_support.hpp"

#include "executors/agent.hpp"
#include "schema/schema.hpp"
#include "util/json_parse.hpp"

#include <smithers/limits.hpp>

using namespace smithers;

namespace {

json problems_json(const spec::problems& ps) {
  json list = json::array();
  for (const auto& p : ps)
    list.push_back({{"path", p.path}, {"message", p.message}});
  return list;
}

void check_numbers(const json& a, const json& b) {
  auto ab = spec::compare_numbers(a, b), ba = spec::compare_numbers(b, a);
  fuzz::require(ab.has_value() == ba.has_value(), "compare_numbers: defined one way only");
  if (ab)
    fuzz::require(*ab == -*ba, "compare_numbers is not antisymmetric", a.dump() + " " + b.dump());
  if (auto aa = spec::compare_numbers(a, a))
    fuzz::require(*aa == 0, "compare_numbers(a, a) != 0", a.dump());
}

// Numbers and strings of the instance, without recursion past a bound.
void scalars(const json& v, std::vector<const json*>& out, int depth = 0) {
  if (out.size() > 64 || depth > 8) return;
  if (v.is_number() || v.is_string()) out.push_back(&v);
  if (v.is_structured())
    for (const auto& c : v)
      scalars(c, out, depth + 1);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parts = fuzz::split_parts(fuzz::as_text(data, size), 2);
  auto schema = util::parse_json(parts[0], {limits::max_workflow_depth}, nullptr);
  if (!schema) return 0;
  auto instance = util::parse_json(parts[1], {limits::max_output_depth}, nullptr);

  fuzz::guarded("schema", [&] {
    auto sps = spec::check_schema(*schema, "outputs.x");
    fuzz::dump_strict(problems_json(sps), "check_schema problems");
    // The prompt of an agent task carries its output schema.
    (void)executors::agent_contract(&*schema);
    if (!sps.empty() || !instance) return;

    auto all = spec::validate(*schema, *instance, "$", 20);
    fuzz::require(all.size() <= 20, "validate went past max_problems");
    auto first = spec::validate(*schema, *instance, "$", 0);
    fuzz::require(first.size() <= 1, "validate with max_problems 0 found more than one");
    fuzz::require(all.empty() == first.empty(), "validate disagrees with itself on the limit");
    if (!all.empty() && !first.empty())
      fuzz::require(all[0] == first[0], "the first problem depends on the limit",
                    all[0].path + ": " + all[0].message + " / " + first[0].path + ": " +
                        first[0].message);
    fuzz::dump_strict(problems_json(all), "validate problems");
    (void)spec::join(all);

    std::vector<const json*> values;
    scalars(*instance, values);
    for (std::size_t i = 0; i < values.size(); ++i) {
      const json& v = *values[i];
      if (v.is_string()) {
        const auto& s = v.get_ref<const std::string&>();
        fuzz::require(spec::utf8_length(s) <= s.size(), "utf8_length beyond the byte count");
      } else {
        (void)spec::is_integral(v);
        if (i + 1 < values.size()) check_numbers(v, *values[i + 1]);
        check_numbers(v, v);
      }
    }
  });
  return 0;
}
