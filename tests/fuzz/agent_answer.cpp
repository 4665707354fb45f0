// Fuzz target `agent_answer`: what the agent executor makes of an answer
// (executors/agent.hpp), without running an agent. The input is the
// answer, then (after a NUL byte) the task's output schema as JSON (empty:
// none), then (after another NUL) the prompt. As the executor does: the
// answer's object (find_output), checked against the schema (check_output),
// else the problems of the answer; the follow-up prompt made of them; the
// AgentRetry event's fields; the authentication-failure phrase of the
// answer; the answer and prompt filled into an agent's arguments
// (fill_agent_argument).
//
// Oracle: no crash, only smithers_error escapes; the follow-up starts with
// the prompt and, for a valid UTF-8 prompt, is valid UTF-8 and quotes the
// answer at most ~800 bytes (plus replacement characters); the event's
// fields serialize; a phrase found is in the answer; a filled argument
// starts with "-" only when the argument as written does (a value never
// becomes an option), and `used_prompt` is set when "{{prompt}}" was there.
#include "fuzz_support.hpp"

#include "executors/agent.hpp"
#include "executors/command.hpp"
#include "executors/executor.hpp"
#include "expr/template.hpp"
#include "schema/schema.hpp"
#include "util/json_parse.hpp"

#include <smithers/limits.hpp>

#include <algorithm>
#include <cctype>

using namespace smithers;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parts = fuzz::split_parts(fuzz::as_text(data, size), 3);
  const std::string answer(parts[0]);
  std::shared_ptr<const json> schema;
  if (auto s = util::parse_json(parts[1], {limits::max_workflow_depth}, nullptr))
    if (spec::check_schema(*s, "output_schema").empty())
      schema = std::make_shared<const json>(std::move(*s));
  const std::string prompt =
      parts[2].empty() ? std::string{"Write the release notes."} : std::string(parts[2]);

  fuzz::guarded("agent answer", [&] {
    executors::task_request req;
    req.key = {"agent-task", 0};
    req.output_schema = schema;
    req.max_output_bytes = limits::default_max_output_bytes;

    // The executor's loop, after the agent has answered.
    json problems = json::array();
    auto found = executors::find_output(answer);
    if (found.refused) {
      problems.push_back({{"path", found.refused->details.value("path", std::string{"$"})},
                          {"message", found.refused->message}});
    } else if (!found.output) {
      problems.push_back({{"path", "$"}, {"message", "no JSON object was found in the answer"}});
    } else if (auto bad = executors::check_output(req, *found.output)) {
      fuzz::check_error(*bad);
      if (bad->details.contains("problems"))
        problems = bad->details["problems"];
      else
        problems.push_back({{"path", "$"}, {"message", bad->message}});
    }
    const json fields = {{"agent", "fuzz"},
                         {"follow_up", 1},
                         {"problems", problems},
                         {"answer_bytes", answer.size()}};
    fuzz::dump_strict(fields, "the AgentRetry event's fields");

    const std::string full_prompt = prompt + executors::agent_contract(schema.get());
    const std::string follow = executors::agent_follow_up(full_prompt, problems, answer);
    fuzz::require(follow.compare(0, full_prompt.size(), full_prompt) == 0,
                  "the follow-up does not start with the prompt");
    if (util::is_valid_utf8(full_prompt))
      fuzz::require(util::is_valid_utf8(follow), "the follow-up is not valid UTF-8");
    // The answer is quoted at most 400 bytes from each end, each byte of it
    // at worst a 3-byte replacement character, plus the "> " of its lines.
    std::size_t problem_text = 0;
    for (const auto& p : problems)
      problem_text += p.dump(-1, ' ', false, json::error_handler_t::replace).size() + 8;
    fuzz::require(follow.size() <= full_prompt.size() + problem_text + 4 * 3 * 800 + 600,
                  "the follow-up quotes too much of the answer");

    if (auto phrase = executors::auth_failure_phrase(answer))
      fuzz::require(lower(answer).find(*phrase) != std::string::npos,
                    "auth_failure_phrase names a phrase the answer does not hold", *phrase);

    for (const char* arg : {"{{prompt}}", "{{ prompt }}", "--print", "-p={{prompt}}", "{{model}}",
                            "x{{prompt}}", "{{prompt}}{{model}}", "{{other}}"}) {
      bool used = false;
      auto filled = spec::fill_agent_argument(arg, answer, prompt, used);
      if (arg[0] != '-')
        fuzz::require(filled.empty() || filled[0] != '-', "a value made an argument an option",
                      filled);
      const bool has_prompt = std::string_view{arg}.find("prompt") != std::string_view::npos;
      fuzz::require(used == has_prompt, "used_prompt is wrong", arg);
    }
  });
  return 0;
}
