// Agent tasks through the smithers binary, with the scripted stand-in
// tests/fixtures/agents/fake-agent (docs/agents.md): the prompt contract,
// follow-ups, fallback chains, authentication failures, timeouts and
// cancellation of an agent's process group, streamed output in `logs`,
// caching, and git worktrees made in a repository the test creates.
#include "system/cli_support.hpp"

#include <algorithm>
#include <csignal>
#include <sys/stat.h>

using namespace smithers::system_test;
using smithers::json;

namespace {

std::string fake_agent() {
  return source_dir() + "/tests/fixtures/agents/fake-agent";
}

/// One agent entry running fake-agent in `mode`, logging its prompts to `log`.
json agent(const std::string& id, const std::string& mode, const std::string& log,
           json env = json::object()) {
  env["FAKE_AGENT_LOG"] = log;
  return {{"id", id}, {"command", {fake_agent(), "--mode", mode}}, {"env", std::move(env)}};
}

json verdict_schema() {
  return {{"type", "object"},
          {"required", {"verdict"}},
          {"additionalProperties", false},
          {"properties", {{"verdict", {{"type", "string"}, {"enum", {"ship", "fix"}}}}}}};
}

json workflow(json root, std::string name = "agents") {
  return {{"name", std::move(name)}, {"root", std::move(root)}};
}

/// The prompts a fake agent was given, in order.
std::vector<std::string> prompts_in(const std::string& log) {
  std::vector<std::string> out;
  if (!file_exists(log)) return out;
  std::string text = read_file(log), cur;
  const std::string end = "----- end of prompt -----\n";
  std::size_t pos = 0;
  for (std::size_t at; (at = text.find(end, pos)) != std::string::npos; pos = at + end.size())
    out.push_back(text.substr(pos, at - pos));
  return out;
}

json only_attempt(const sandbox& sb, const std::string& run, const std::string& node) {
  auto a = attempts_of(sb.inspect(run), node);
  REQUIRE(a.size() == 1);
  return a[0];
}

std::string git_out(const std::string& repo, const std::vector<std::string>& args) {
  std::vector<std::string> argv{"git", "-C", repo};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_command(argv);
  INFO(r);
  REQUIRE(r.exit_code == 0);
  return r.out;
}

/// A git repository with one commit, made in the sandbox.
std::string make_repo(const sandbox& sb, const std::string& name = "repo") {
  std::string repo = sb.file(name);
  auto r = run_command({"git", "-c", "init.defaultBranch=main", "init", "-q", repo});
  REQUIRE(r.exit_code == 0);
  sb.write(name + "/README.md", std::string{"hello\n"});
  git_out(repo, {"add", "README.md"});
  git_out(repo, {"-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c",
                 "commit.gpgsign=false", "commit", "-q", "--no-verify", "-m", "init"});
  return repo;
}

} // namespace

TEST_CASE("an agent's first answer that fits is the output; the prompt carries the schema") {
  sandbox sb;
  std::string log = sb.file("agent.log");
  json task = {
      {"task", "review"},
      {"agent", agent("claude", "good", log, {{"FAKE_AGENT_ANSWER", R"({"verdict": "ship"})"}})},
      {"prompt", "ROLE: reviewer\nReview {{input.topic}} for run {{run_id}}."},
      {"output_schema", verdict_schema()}};
  sb.write("wf.json", workflow(task));
  auto r = sb.cli({"run", "wf.json", "--run-id", "r1", "--input", R"({"topic": "the parser"})"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = sb.inspect("r1");
  CHECK(j["outputs"]["review"] == json{{"verdict", "ship"}});
  auto a = only_attempt(sb, "r1", "review");
  CHECK(a["agent"]["id"] == "claude");
  CHECK(a["agent"]["follow_ups"] == 0);
  CHECK(a["agent"]["prompt_bytes"].get<std::int64_t>() > 0);
  CHECK(a["agent"]["answer_bytes"].get<std::int64_t>() > 0);
  auto prompts = prompts_in(log);
  REQUIRE(prompts.size() == 1);
  // The template filled, then the contract: the fence and the schema.
  CHECK(prompts[0].rfind("ROLE: reviewer\nReview the parser for run r1.", 0) == 0);
  CHECK(contains(prompts[0], "```json"));
  CHECK(contains(prompts[0], "must match this JSON Schema"));
  CHECK(contains(prompts[0], "\"enum\""));
  CHECK(static_cast<std::int64_t>(prompts[0].size()) == a["agent"]["prompt_bytes"]);
  // Its chatter streamed as NodeOutput, in order; NodeFinished has the output.
  auto events = sb.events("r1");
  auto out = of_type(events, "NodeOutput");
  REQUIRE(out.size() >= 4);
  std::vector<std::string> stdout_lines;
  for (const auto& e : out) {
    CHECK(e["node_id"] == "review");
    CHECK(e["attempt"] == 1);
    if (e["stream"] == "stdout") stdout_lines.push_back(e["text"]);
  }
  REQUIRE(stdout_lines.size() >= 2);
  CHECK(contains(stdout_lines[0], "fake-agent: thinking about node review"));
  auto fin = of_type(events, "NodeFinished");
  REQUIRE(fin.size() == 1);
  CHECK(fin[0]["output"] == json{{"verdict", "ship"}});
  CHECK(of_type(events, "NodeStarted")[0]["agent"] == "claude");
  CHECK(of_type(events, "AgentRetry").empty());
}

TEST_CASE("the prompt replaces a {{prompt}} argument, and {{model}} the model") {
  sandbox sb;
  std::string log = sb.file("agent.log");
  json a = {{"id", "codex"},
            {"command", {fake_agent(), "--model", "{{model}}", "--prompt", "{{prompt}}"}},
            {"model", "gpt-x"},
            {"env", {{"FAKE_AGENT_LOG", log}}}};
  sb.write("wf.json",
           workflow({{"task", "t"}, {"agent", a}, {"prompt", "say hi to {{input.who}}"}}));
  auto r = sb.cli({"run", "wf.json", "--run-id", "r1", "--input", R"({"who": "bob"})"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto prompts = prompts_in(log);
  REQUIRE(prompts.size() == 1);
  CHECK(prompts[0].rfind("say hi to bob", 0) == 0);
  auto at = only_attempt(sb, "r1", "t");
  CHECK(at["agent"]["model"] == "gpt-x");
}

TEST_CASE("a wrong answer is asked again with its problems, within the same attempt") {
  sandbox sb;
  std::string log = sb.file("agent.log");
  json task = {{"task", "review"},
               {"agent", agent("claude", "fix-on-follow-up", log,
                               {{"FAKE_AGENT_ANSWER", R"({"verdict": "fix"})"},
                                {"FAKE_AGENT_WRONG", R"({"verdict": "maybe"})"}})},
               {"prompt", "Review it."},
               {"output_schema", verdict_schema()}};
  sb.write("wf.json", workflow(task));
  auto r = sb.cli({"run", "wf.json", "--run-id", "r1"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(sb.inspect("r1")["outputs"]["review"] == json{{"verdict", "fix"}});
  auto a = only_attempt(sb, "r1", "review");
  CHECK(a["attempt"] == 1);
  CHECK(a["agent"]["follow_ups"] == 1);
  auto prompts = prompts_in(log);
  REQUIRE(prompts.size() == 2);
  // The follow-up: the first prompt, the schema's complaint at its path,
  // and the previous answer.
  CHECK(prompts[1].rfind(prompts[0], 0) == 0);
  CHECK(contains(prompts[1], "Your previous answer could not be used:"));
  CHECK(contains(prompts[1], "- $.verdict:"));
  CHECK(contains(prompts[1], "> {\"verdict\": \"maybe\"}"));
  auto retries = of_type(sb.events("r1"), "AgentRetry");
  REQUIRE(retries.size() == 1);
  CHECK(retries[0]["node_id"] == "review");
  CHECK(retries[0]["attempt"] == 1);
  CHECK(retries[0]["agent"] == "claude");
  CHECK(retries[0]["follow_up"] == 1);
  REQUIRE(retries[0]["problems"].size() == 1);
  CHECK(retries[0]["problems"][0]["path"] == "$.verdict");
}

TEST_CASE("three bad follow-ups fail the attempt INVALID_OUTPUT; the retry asks the next agent") {
  sandbox sb;
  std::string log1 = sb.file("a1.log"), log2 = sb.file("a2.log");
  json task = {{"task", "plan"},
               {"agent",
                {agent("chatty", "prose", log1),
                 agent("backup", "good", log2, {{"FAKE_AGENT_ANSWER", R"({"verdict": "ship"})"}})}},
               {"prompt", "Plan it."},
               {"output_schema", verdict_schema()},
               {"retries", 1},
               {"retry", {{"initial_ms", 10}}}};
  sb.write("wf.json", workflow(task));
  auto r = sb.cli({"run", "wf.json", "--run-id", "r1"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(prompts_in(log1).size() == 4); // the question and 3 follow-ups
  CHECK(prompts_in(log2).size() == 1);
  auto attempts = attempts_of(sb.inspect("r1"), "plan");
  REQUIRE(attempts.size() == 2);
  CHECK(attempts[0]["state"] == "failed");
  CHECK(attempts[0]["error"]["code"] == "INVALID_OUTPUT");
  CHECK(attempts[0]["error"]["details"]["follow_ups"] == 3);
  CHECK(attempts[0]["agent"]["id"] == "chatty");
  CHECK(attempts[0]["agent"]["follow_ups"] == 3);
  CHECK(attempts[1]["state"] == "finished");
  CHECK(attempts[1]["agent"]["id"] == "backup");
  auto events = sb.events("r1");
  CHECK(of_type(events, "AgentRetry").size() == 3);
  auto failed = of_type(events, "NodeFailed");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0]["will_retry"] == true);
}

TEST_CASE("without retries, an agent's unusable answers fail the run INVALID_OUTPUT") {
  sandbox sb;
  json task = {{"task", "plan"},
               {"agent", agent("chatty", "prose", sb.file("a.log"))},
               {"prompt", "Plan it."}};
  sb.write("wf.json", workflow(task));
  auto r = sb.cli({"run", "wf.json", "--run-id", "r1"});
  INFO(r);
  CHECK(r.exit_code == 1);
  auto a = only_attempt(sb, "r1", "plan");
  CHECK(a["error"]["code"] == "INVALID_OUTPUT");
  CHECK(contains(a["error"]["message"], "no usable answer after 3 follow-ups"));
}

TEST_CASE("an agent whose credentials fail is disabled for the run; the chain moves on") {
  sandbox sb;
  std::string log1 = sb.file("auth.log"), log2 = sb.file("good.log");
  json chain = {agent("claude", "auth", log1), agent("codex", "good", log2)};
  // Two tasks with the same chain and no retries: the first moves on to
  // codex without using a retry, the second never asks claude.
  json root = {{"sequence",
                {{{"task", "one"}, {"agent", chain}, {"prompt", "first"}},
                 {{"task", "two"}, {"agent", chain}, {"prompt", "second"}}}}};
  sb.write("wf.json", workflow(root));
  auto r = sb.cli({"run", "wf.json", "--run-id", "r1"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(prompts_in(log1).size() == 1);
  CHECK(prompts_in(log2).size() == 2);
  auto j = sb.inspect("r1");
  auto one = attempts_of(j, "one");
  REQUIRE(one.size() == 2);
  CHECK(one[0]["error"]["code"] == "AGENT_AUTH_FAILED");
  CHECK(one[0]["error"]["details"]["agent"] == "claude");
  CHECK(one[0]["error"]["details"]["matched"] == "invalid api key");
  CHECK(one[1]["agent"]["id"] == "codex");
  auto two = attempts_of(j, "two");
  REQUIRE(two.size() == 1);
  CHECK(two[0]["agent"]["id"] == "codex");
  auto retrying = of_type(sb.events("r1"), "NodeRetrying");
  REQUIRE(retrying.size() == 1);
  CHECK(retrying[0]["next_agent"] == true);
  CHECK(retrying[0]["delay_ms"] == 0);
}

TEST_CASE("when every agent of a chain fails to authenticate, the task fails AGENT_AUTH_FAILED") {
  sandbox sb;
  json task = {
      {"task", "one"},
      {"agent", {agent("a", "auth", sb.file("a.log")), agent("b", "auth", sb.file("b.log"))}},
      {"prompt", "x"},
      {"retries", 3}};
  sb.write("wf.json", workflow(task));
  auto r = sb.cli({"run", "wf.json", "--run-id", "r1"});
  INFO(r);
  CHECK(r.exit_code == 1);
  auto attempts = attempts_of(sb.inspect("r1"), "one");
  REQUIRE(attempts.size() == 2); // each agent asked once; retries cannot help
  CHECK(attempts[1]["error"]["code"] == "AGENT_AUTH_FAILED");
  CHECK(prompts_in(sb.file("a.log")).size() == 1);
  CHECK(prompts_in(sb.file("b.log")).size() == 1);
}

TEST_CASE("an agent's timeout ends its whole process group") {
  sandbox sb;
  std::string pidfile = sb.file("child.pid");
  json task = {
      {"task", "slow"},
      {"agent", agent("sleepy", "slow", sb.file("a.log"), {{"FAKE_AGENT_PIDFILE", pidfile}})},
      {"prompt", "take your time"},
      {"timeout_ms", 1500}};
  sb.write("wf.json", workflow(task));
  auto r = sb.cli({"run", "wf.json", "--run-id", "r1"});
  INFO(r);
  CHECK(r.exit_code == 1);
  auto a = only_attempt(sb, "r1", "slow");
  CHECK(a["error"]["code"] == "TASK_TIMEOUT");
  CHECK(contains(a["error"]["message"], "agent \"sleepy\" timed out"));
  REQUIRE(file_exists(pidfile));
  pid_t child = std::stoi(read_file(pidfile));
  CHECK(eventually([&] { return !process_alive(child); }, std::chrono::seconds{5}));
}

TEST_CASE("cancelling a run ends its agent's process group") {
  sandbox sb;
  std::string pidfile = sb.file("child.pid");
  json task = {
      {"task", "slow"},
      {"agent", agent("sleepy", "slow", sb.file("a.log"), {{"FAKE_AGENT_PIDFILE", pidfile}})},
      {"prompt", "take your time"}};
  sb.write("wf.json", workflow(task));
  auto run = sb.start({"run", "wf.json", "--run-id", "r1"});
  REQUIRE(eventually([&] { return pid_from_file(pidfile) > 0; }, std::chrono::seconds{20}));
  pid_t child = pid_from_file(pidfile);
  CHECK(process_alive(child));
  auto c = sb.cli({"cancel", "r1"});
  INFO(c);
  CHECK(c.exit_code == 0);
  auto res = run->wait();
  INFO(res);
  CHECK(res.exit_code == 2);
  CHECK(eventually([&] { return !process_alive(child); }, std::chrono::seconds{5}));
  CHECK(only_attempt(sb, "r1", "slow")["state"] == "cancelled");
}

TEST_CASE("logs shows what an agent prints, in order, live with -f, one node with --node") {
  sandbox sb;
  json root = {{"sequence",
                {{{"task", "talk"},
                  {"agent", agent("a", "lines", sb.file("a.log"), {{"FAKE_AGENT_LINES", "12"}})},
                  {"prompt", "count"}},
                 {{"task", "other"}, {"run", {"sh", "-c", "echo other-line; echo '{}'"}}}}}};
  sb.write("wf.json", workflow(root));
  auto run = sb.start({"run", "wf.json", "--run-id", "r1"});
  auto follow = sb.cli({"logs", "-f", "r1", "--node", "talk"});
  INFO(follow);
  CHECK(follow.exit_code == 0);
  CHECK(run->wait().exit_code == 0);
  // Every numbered line, in order, and nothing of the other node.
  std::size_t at = 0;
  for (int i = 1; i <= 12; ++i) {
    std::string want = "talk #1 stdout line " + std::to_string(i) + "\n";
    auto pos = follow.out.find(want, at);
    INFO(want);
    REQUIRE(pos != std::string::npos);
    at = pos + want.size();
  }
  CHECK_FALSE(contains(follow.out, "other-line"));
  CHECK(contains(follow.out, "NodeFinished"));
  // The same lines as events, each with its stream, in seq order.
  std::vector<std::string> texts;
  std::int64_t last_seq = -1;
  for (const auto& e : of_type(sb.events("r1"), "NodeOutput")) {
    CHECK(e["seq"].get<std::int64_t>() > last_seq);
    last_seq = e["seq"];
    if (e["node_id"] == "talk" && e["stream"] == "stdout") texts.push_back(e["text"]);
  }
  std::vector<std::string> numbered;
  for (const auto& t : texts)
    if (t.rfind("line ", 0) == 0) numbered.push_back(t);
  REQUIRE(numbered.size() == 12);
  for (int i = 0; i < 12; ++i)
    CHECK(numbered[static_cast<std::size_t>(i)] == "line " + std::to_string(i + 1) + "\n");
  auto other = sb.cli({"--format", "json", "logs", "r1", "--node", "other"});
  REQUIRE(other.exit_code == 0);
  for (const auto& e : other.out_ndjson())
    CHECK(e["node_id"] == "other");
}

TEST_CASE("streamed output is bounded per attempt; the attempt counts what was left out") {
  sandbox sb;
  // 2,000 lines of 99 bytes (+ newline): 200,000 bytes, then the output.
  json root = {{"task", "loud"},
               {"run",
                {"sh", "-c",
                 "i=0; while [ $i -lt 2000 ]; do printf '%099d\\n' $i; i=$((i+1)); done; "
                 "echo '{\"ok\": true}'"}}};
  sb.write("wf.json", workflow(root));
  auto r = sb.cli({"run", "wf.json", "--run-id", "r1"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  std::size_t streamed = 0;
  for (const auto& e : of_type(sb.events("r1"), "NodeOutput"))
    streamed += e["text"].get<std::string>().size();
  CHECK(streamed == 64 * 1024);
  auto a = only_attempt(sb, "r1", "loud");
  CHECK(a["output_dropped_bytes"].get<std::size_t>() == 2000 * 100 + 13 - 64 * 1024);
}

TEST_CASE("heartbeat lines are not streamed as output") {
  sandbox sb;
  json root = {{"task", "beat"},
               {"run",
                {"sh", "-c",
                 "echo one; echo '::heartbeat {\"n\": 1}'; echo '::heartbeat' >&2; echo two >&2; "
                 "echo '{}'"}}};
  sb.write("wf.json", workflow(root));
  REQUIRE(sb.cli({"run", "wf.json", "--run-id", "r1"}).exit_code == 0);
  std::vector<std::string> texts;
  for (const auto& e : of_type(sb.events("r1"), "NodeOutput"))
    texts.push_back(e["stream"].get<std::string>() + ":" + e["text"].get<std::string>());
  std::sort(texts.begin(), texts.end()); // two pipes: no order between them
  CHECK(texts == std::vector<std::string>{"stderr:two\n", "stdout:one\n", "stdout:{}\n"});
}

TEST_CASE("a cached agent task asks nothing the second time; a changed prompt asks again") {
  sandbox sb;
  std::string log = sb.file("a.log");
  auto wf_with = [&](const std::string& prompt) {
    return workflow(
        {{"task", "t"}, {"agent", agent("a", "good", log)}, {"prompt", prompt}, {"cache", true}});
  };
  sb.write("wf.json", wf_with("question one"));
  REQUIRE(sb.cli({"run", "wf.json", "--run-id", "r1"}).exit_code == 0);
  REQUIRE(sb.cli({"run", "wf.json", "--run-id", "r2"}).exit_code == 0);
  CHECK(prompts_in(log).size() == 1);
  CHECK(only_attempt(sb, "r2", "t")["cached"] == true);
  sb.write("wf.json", wf_with("question two"));
  REQUIRE(sb.cli({"run", "wf.json", "--run-id", "r3"}).exit_code == 0);
  CHECK(prompts_in(log).size() == 2);
  CHECK(only_attempt(sb, "r3", "t")["cached"] == false);
}

TEST_CASE("parallel tasks get isolated worktrees and branches of one repository") {
  sandbox sb;
  std::string repo = make_repo(sb);
  auto writer = [&](const std::string& id) {
    return json{{"task", id},
                {"cwd", "repo"},
                {"worktree", {{"path", "../wt/{{node_id}}"}, {"branch", "feature/{{node_id}}"}}},
                {"run",
                 {"sh", "-c",
                  "echo " + id + " > " + id +
                      ".txt && git add . && git -c user.name=t -c user.email=t@e.invalid commit "
                      "-q -m " +
                      id + " && printf '{\"dir\": \"%s\"}' \"$(pwd -P)\""}}};
  };
  json agent_task = {{"task", "c"},
                     {"cwd", "repo"},
                     {"worktree", {{"path", "../wt/c"}}},
                     {"agent", agent("a", "good", sb.file("a.log"))},
                     {"prompt", "hi"}};
  sb.write("wf.json", workflow({{"parallel", {writer("a"), writer("b"), agent_task}}}));
  auto r = sb.cli({"run", "wf.json", "--run-id", "r1"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  std::string wt = sb.file("wt");
  CHECK(file_exists(wt + "/a/a.txt"));
  CHECK_FALSE(file_exists(wt + "/a/b.txt"));
  CHECK(file_exists(wt + "/b/b.txt"));
  CHECK_FALSE(file_exists(wt + "/b/a.txt"));
  CHECK_FALSE(file_exists(repo + "/a.txt")); // the main checkout is untouched
  CHECK(file_exists(wt + "/c/README.md"));
  auto branches = git_out(repo, {"branch", "--list"});
  CHECK(contains(branches, "feature/a"));
  CHECK(contains(branches, "feature/b"));
  CHECK(contains(branches, "smithers/c")); // the default branch name
  CHECK(contains(git_out(repo, {"log", "--format=%s", "feature/a"}), "a\n"));
  auto j = sb.inspect("r1");
  auto a = only_attempt(sb, "r1", "a");
  CHECK(a["worktree"]["created"] == true);
  CHECK(a["worktree"]["branch"] == "feature/a");
  CHECK(j["outputs"]["a"]["dir"] == a["worktree"]["path"]);
  CHECK(
      contains(sb.cli({"inspect", "r1"}).out, "in \"" + a["worktree"]["path"].get<std::string>()));
}

TEST_CASE("a worktree made for a failed attempt is reused when the run is resumed") {
  sandbox sb;
  make_repo(sb);
  // Fails while a flag file exists; the worktree keeps what it wrote.
  json task = {{"task", "w"},
               {"cwd", "repo"},
               {"worktree", {{"path", "../wt/w"}, {"branch", "work"}}},
               {"run",
                {"sh", "-c",
                 "echo attempt >> notes.txt; if [ -e \"$FLAG\" ]; then exit 1; fi; "
                 "printf '{\"lines\": %s}' $(wc -l < notes.txt)"}},
               {"env", {{"FLAG", sb.file("fail-now")}}}};
  sb.write("fail-now", std::string{"x"});
  sb.write("wf.json", workflow(task));
  auto first = sb.cli({"run", "wf.json", "--run-id", "r1"});
  INFO(first);
  REQUIRE(first.exit_code == 1);
  ::unlink(sb.file("fail-now").c_str());
  auto again = sb.cli({"resume", "r1"});
  INFO(again);
  REQUIRE(again.exit_code == 0);
  auto attempts = attempts_of(sb.inspect("r1"), "w");
  REQUIRE(attempts.size() == 2);
  CHECK(attempts[0]["worktree"]["created"] == true);
  CHECK(attempts[1]["worktree"]["created"] == false);
  CHECK(attempts[1]["worktree"]["path"] == attempts[0]["worktree"]["path"]);
  CHECK(sb.inspect("r1")["outputs"]["w"]["lines"] == 2); // the same checkout, both attempts' notes
}

TEST_CASE("a worktree that cannot be made fails the attempt WORKTREE_CREATE_FAILED") {
  sandbox sb;
  make_repo(sb);
  for (const char* dir : {"plain", "occupied"})
    REQUIRE(::mkdir(sb.file(dir).c_str(), 0755) == 0);
  sb.write("plain/keep.txt", std::string{"x"});
  sb.write("occupied/file.txt", std::string{"x"});
  struct row {
    const char* name;
    json task;
    const char* says;
  };
  const row rows[] = {
      {"not a repository",
       {{"task", "t"}, {"cwd", "plain"}, {"worktree", {{"path", "../wt/t"}}}, {"run", {"true"}}},
       "is not inside a git repository"},
      {"a path that is something else",
       {{"task", "t"}, {"cwd", "repo"}, {"worktree", {{"path", "../occupied"}}}, {"run", {"true"}}},
       "exists and is not a worktree"},
      {"a bad branch name",
       {{"task", "t"},
        {"cwd", "repo"},
        {"worktree", {{"path", "../wt/x"}, {"branch", "bad..name"}}},
        {"run", {"true"}}},
       "is not a valid branch name"},
      {"an unknown base",
       {{"task", "t"},
        {"cwd", "repo"},
        {"worktree", {{"path", "../wt/y"}, {"base", "no-such-ref"}}},
        {"run", {"true"}}},
       "git could not create a worktree"},
      {"a path a template left empty",
       {{"task", "t"}, {"cwd", "repo"}, {"worktree", {{"path", "{{input.p}}"}}}, {"run", {"true"}}},
       "the worktree's path is empty"},
  };
  int n = 0;
  for (const auto& c : rows) {
    INFO(c.name);
    std::string id = "r" + std::to_string(++n);
    sb.write("wf.json", workflow(c.task));
    auto r = sb.cli({"run", "wf.json", "--run-id", id, "--input", R"({"p": ""})"});
    INFO(r);
    CHECK(r.exit_code == 1);
    auto a = only_attempt(sb, id, "t");
    CHECK(a["error"]["code"] == "WORKTREE_CREATE_FAILED");
    CHECK(contains(a["error"]["message"], c.says));
  }
  CHECK_FALSE(file_exists(sb.file("occupied/.git")));
}

TEST_CASE("agent workflows that cannot work are refused before anything runs") {
  sandbox sb;
  struct row {
    json task;
    const char* path;
    const char* says;
  };
  const row rows[] = {
      {{{"task", "t"}, {"agent", {{"id", "a"}, {"command", {"x"}}}}}, "root", "needs \"prompt\""},
      {{{"task", "t"},
        {"agent", {{"id", "a"}, {"command", {"x", "{{input.k}}"}}}},
        {"prompt", "p"}},
       "root.agent.command[1]",
       "takes {{prompt}} and {{model}} only"},
      {{{"task", "t"}, {"compute", "noop"}, {"worktree", {{"path", "w"}}}},
       "root.worktree",
       "only command and agent tasks run in a worktree"},
  };
  for (const auto& c : rows) {
    INFO(c.task.dump());
    sb.write("wf.json", workflow(c.task));
    auto r = sb.cli({"run", "wf.json"});
    INFO(r);
    CHECK(r.exit_code == 4);
    CHECK(contains(r.err, "INVALID_WORKFLOW"));
    CHECK(contains(r.err, c.path));
    CHECK(contains(r.err, c.says));
    CHECK_FALSE(sb.db_exists());
  }
}

TEST_CASE("the agents example runs to finished from the repository's root") {
  sandbox sb;
  // A copy of the example next to a scratch database: it makes its
  // repository under the directory it runs in.
  auto cp = run_command({"cp", "-r", source_dir() + "/examples", sb.file("examples")});
  REQUIRE(cp.exit_code == 0);
  auto r = sb.cli({"run", "examples/agents/build-feature.json", "--run-id", "demo"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = sb.inspect("demo");
  CHECK(j["run"]["status"] == "finished");
  std::string repo = sb.file(".smithers-demo/repo");
  auto branches = git_out(repo, {"branch", "--list", "demo/*"});
  CHECK(contains(branches, "demo/greeting"));
  CHECK(contains(branches, "demo/farewell"));
  CHECK(read_file(sb.file(".smithers-demo/worktrees/greeting/greeting.txt")) ==
        "hello from smithers\n");
  // A second run reuses the repository and the worktrees.
  auto again = sb.cli({"run", "examples/agents/build-feature.json", "--run-id", "demo2"});
  INFO(again);
  CHECK(again.exit_code == 0);
}
