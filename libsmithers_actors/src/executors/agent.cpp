#include "executors/agent.hpp"

#include "executors/command.hpp"
#include "executors/worktree.hpp"
#include "expr/template.hpp"
#include "util/clock.hpp"

#include <smithers/limits.hpp>

#include <algorithm>
#include <cctype>

namespace smithers::executors {

namespace {

// Bytes of the previous answer a follow-up quotes, from each end.
constexpr std::size_t summary_bytes = 400;

// Lower-case phrases that mean the agent's credentials failed. Kept short
// and specific: a hit disables the agent for the run.
constexpr std::string_view auth_phrases[] = {
    "invalid api key",
    "invalid_api_key",
    "incorrect api key",
    "api key not valid",
    "missing api key",
    "api key is missing",
    "no api key",
    "invalid x-api-key",
    "authentication_error",
    "authentication failed",
    "authentication required",
    "unauthenticated",
    "unauthorized",
    "not logged in",
    "please log in",
    "please login",
    "run /login",
    "login required",
    "invalid credentials",
    "token has expired",
    "token expired",
    "expired token",
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Cuts at a UTF-8 sequence boundary at or before `n` bytes from the front
// (from_end: from the back).
std::string_view utf8_cut(std::string_view s, std::size_t n, bool from_end) {
  if (s.size() <= n) return s;
  if (!from_end) {
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)
      --n;
    return s.substr(0, n);
  }
  std::size_t start = s.size() - n;
  while (start < s.size() && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80)
    ++start;
  return s.substr(start);
}

std::string quote_lines(std::string_view text) {
  std::string out;
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1); // no empty last line
  std::size_t i = 0;
  while (i <= text.size()) {
    std::size_t nl = text.find('\n', i);
    if (nl == std::string_view::npos) nl = text.size();
    out += "> ";
    out.append(text.substr(i, nl - i));
    out += '\n';
    i = nl + 1;
  }
  return out;
}

class agent_executor_impl final : public executor {
public:
  task_outcome run(const task_job& job, const attempt_io& io) const override;
};

} // namespace

std::string agent_contract(const json* schema) {
  std::string s = "\n\n---\nEnd your answer with one JSON object in a fenced block:\n\n"
                  "```json\n{ ... }\n```\n";
  if (schema && !schema->is_null())
    s += "\nThe object must match this JSON Schema:\n\n```json\n" +
         schema->dump(2, ' ', false, json::error_handler_t::replace) + "\n```\n";
  return s;
}

std::string agent_follow_up(const std::string& prompt, const json& problems,
                            std::string_view previous_answer) {
  std::string s = prompt;
  s += "\n\n---\nYour previous answer could not be used:\n";
  for (const auto& p : problems) {
    if (p.is_object())
      s += "- " + p.value("path", std::string{"$"}) + ": " + p.value("message", std::string{}) +
           "\n";
    else if (p.is_string())
      s += "- " + p.get<std::string>() + "\n";
  }
  std::string answer = valid_utf8(previous_answer);
  if (answer.size() <= 2 * summary_bytes) {
    s += "\nYour previous answer (" + std::to_string(previous_answer.size()) + " bytes) was:\n" +
         quote_lines(answer);
  } else {
    s += "\nYour previous answer (" + std::to_string(previous_answer.size()) + " bytes) began:\n" +
         quote_lines(utf8_cut(answer, summary_bytes, false)) + "and ended:\n" +
         quote_lines(utf8_cut(answer, summary_bytes, true));
  }
  s += "\nAnswer again, in full: end with a fenced ```json block holding one JSON object that "
       "matches the format above.\n";
  return s;
}

std::optional<std::string> auth_failure_phrase(std::string_view text) {
  std::string t = lower(text);
  for (auto phrase : auth_phrases)
    if (t.find(phrase) != std::string::npos) return std::string{phrase};
  for (std::size_t at = t.find("401"); at != std::string::npos; at = t.find("401", at + 1)) {
    bool before = at > 0 && std::isalnum(static_cast<unsigned char>(t[at - 1]));
    bool after = at + 3 < t.size() && std::isalnum(static_cast<unsigned char>(t[at + 3]));
    if (!before && !after) return std::string{"401"};
  }
  return std::nullopt;
}

task_outcome agent_executor_impl::run(const task_job& job, const attempt_io& io) const {
  const task_request& req = job.request;
  const agent_call& agent = req.agent;
  task_outcome res;
  res.meta = json::object();
  std::string cwd = req.cwd;
  if (auto err = enter_worktree(req, io.cancel, cwd, res.meta)) {
    res.err = std::move(err);
    return res;
  }
  const std::string prompt = req.prompt + agent_contract(req.output_schema.get());
  json info = {{"id", agent.id}, {"prompt_bytes", prompt.size()}, {"follow_ups", 0}};
  if (!agent.model.empty()) info["model"] = agent.model;
  auto finish = [&](task_outcome& r) -> task_outcome {
    r.meta["agent"] = info;
    return std::move(r);
  };
  const std::string what = "agent \"" + agent.id + "\"";
  const std::int64_t started = util::now_ms();
  std::string ask = prompt;
  for (int follow_up = 0;; ++follow_up) {
    command_spec cs;
    bool prompt_in_args = false;
    for (const auto& a : agent.command)
      cs.argv.push_back(spec::fill_agent_argument(a, ask, agent.model, prompt_in_args));
    cs.env = req.env;
    for (const auto& [k, v] : agent.env)
      cs.env[k] = v;
    cs.env["SMITHERS_AGENT_ID"] = agent.id;
    if (!agent.model.empty()) cs.env["SMITHERS_AGENT_MODEL"] = agent.model;
    cs.env["SMITHERS_FOLLOW_UP"] = std::to_string(follow_up);
    cs.cwd = cwd;
    cs.run_id = req.run_id;
    cs.node_id = req.key.id;
    cs.iteration = req.key.iteration;
    cs.attempt = req.attempt;
    cs.last_heartbeat = req.last_heartbeat;
    cs.cancel = io.cancel;
    cs.on_start = io.process_started;
    cs.max_stdout_bytes = req.max_output_bytes * limits::stdout_bytes_per_output_byte;
    cs.stdin_data = prompt_in_args ? std::string{} : ask;
    cs.what = what;
    cs.find_output = false;
    cs.on_output = io.output;
    if (req.timeout_ms) {
      // One budget for the attempt, follow-ups included.
      std::int64_t left = *req.timeout_ms - (util::now_ms() - started);
      if (left <= 0) {
        res.err = error{errc::task_timeout,
                        what + " timed out after " + std::to_string(*req.timeout_ms) +
                            " ms (follow-ups included)",
                        {{"timeout_ms", *req.timeout_ms}, {"follow_ups", follow_up}}};
        return finish(res);
      }
      cs.timeout = std::chrono::milliseconds{left};
    }
    auto oc = run_command(cs, [&](const json& data, bool has_data) {
      io.heartbeat(data, has_data && !data.is_null());
    });
    info["answer_bytes"] = oc.out.size();
    if (oc.failure) {
      // A failed process whose words say its credentials failed: the run
      // stops asking this agent (docs/agents.md).
      if (oc.failure->code == errc::task_failed && oc.failure->details.contains("exit_code")) {
        std::string tail = last_lines(oc.err, 20) + "\n" + last_lines(oc.out, 20);
        if (auto phrase = auth_failure_phrase(tail)) {
          res.err = error{errc::agent_auth_failed,
                          what + " failed to authenticate (its output says \"" + *phrase +
                              "\"): it is not asked again in this run",
                          {{"agent", agent.id},
                           {"matched", *phrase},
                           {"exit_code", oc.failure->details["exit_code"]},
                           {"stderr_tail", oc.failure->details.value("stderr_tail", "")}}};
          return finish(res);
        }
      }
      oc.failure->details["agent"] = agent.id;
      res.err = std::move(oc.failure);
      return finish(res);
    }
    // The answer: found, and fit for the task; otherwise what is wrong.
    json problems = json::array();
    auto found = find_output(oc.out);
    if (found.refused) {
      problems.push_back({{"path", found.refused->details.value("path", std::string{"$"})},
                          {"message", found.refused->message}});
    } else if (!found.output) {
      problems.push_back({{"path", "$"},
                          {"message", "no JSON object was found in the answer: end it with a "
                                      "fenced ```json block"}});
    } else if (auto bad = check_output(req, *found.output)) {
      if (bad->details.contains("problems"))
        problems = bad->details["problems"];
      else
        problems.push_back({{"path", "$"}, {"message", bad->message}});
    } else {
      res.output = std::move(found.output);
      return finish(res);
    }
    if (follow_up == agent_max_follow_ups) {
      res.err = error{errc::invalid_output,
                      what + " gave no usable answer after " +
                          std::to_string(agent_max_follow_ups) + " follow-ups",
                      {{"agent", agent.id},
                       {"follow_ups", follow_up},
                       {"problems", problems},
                       {"stdout_tail", last_lines(oc.out, 20)}}};
      return finish(res);
    }
    info["follow_ups"] = follow_up + 1;
    io.agent_retry({{"agent", agent.id},
                    {"follow_up", follow_up + 1},
                    {"problems", problems},
                    {"answer_bytes", oc.out.size()}});
    ask = agent_follow_up(prompt, problems, oc.out);
  }
}

const executor& agent_executor() {
  static const agent_executor_impl instance;
  return instance;
}

} // namespace smithers::executors
