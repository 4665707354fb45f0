// smithers approve / deny / signal: what a waiting run waits for, from any
// process (docs/waiting.md). Each is stored in the run's inbox: a live owner
// takes it within 500 ms; a run nobody drives goes on with `smithers resume`
// or `smithers supervise`.
#include "cli.hpp"

#include <smithers/admin.hpp>
#include <smithers/limits.hpp>

#include <cstdlib>
#include <iostream>
#include <memory>

namespace smithers::cli {

std::string shell_word(const std::string& text) {
  bool plain = !text.empty();
  for (char c : text)
    if (!(std::isalnum(static_cast<unsigned char>(c)) ||
          std::string_view{"._:/@=+,-"}.find(c) != std::string_view::npos))
      plain = false;
  if (plain) return text;
  std::string out = "'";
  for (char c : text)
    out += c == '\'' ? std::string{"'\\''"} : std::string(1, c);
  return out + "'";
}

std::string smithers_command(const globals& g) {
  const char* env = std::getenv("SMITHERS_DB");
  bool default_db = g.db == (env && *env ? std::string{env} : std::string{"smithers.db"});
  return default_db ? "smithers" : "smithers --db " + shell_word(g.db);
}

json continue_commands(const globals& g, const std::string& run_id, const json& waiting) {
  std::string base = smithers_command(g);
  std::string run = shell_word(run_id);
  json out = json::array();
  for (const auto& w : waiting) {
    std::string kind = w.value("kind", std::string{});
    json cmds = json::array();
    if (kind == "approval") {
      std::string node = " --node " + shell_word(w.value("node_id", std::string{}));
      std::int64_t it = w.value("iteration", std::int64_t{0});
      if (it != 0) node += " --iteration " + std::to_string(it);
      cmds.push_back(base + " approve " + run + node);
      cmds.push_back(base + " deny " + run + node);
    } else if (kind == "signal") {
      cmds.push_back(base + " signal " + run + " " + shell_word(w.value("name", std::string{})) +
                     " --data '{}'");
    }
    out.push_back(std::move(cmds));
  }
  return out;
}

namespace {

struct decide_args {
  std::string run_id;
  std::string node;
  std::string iteration;
  std::string by;
  std::string note;
};

void print_stored(const globals& g, const std::string& what, const inbox_report& rep,
                  const std::string& run_id) {
  std::string resume = smithers_command(g) + " resume " + shell_word(run_id);
  if (g.json()) {
    json j = {{"run_id", run_id},
              {"recorded", what},
              {"inbox_id", rep.id},
              {"run_status", rep.run.status},
              {"needs_resume", rep.needs_resume}};
    if (!rep.node_id.empty()) {
      j["node_id"] = rep.node_id;
      j["iteration"] = rep.iteration;
    }
    if (rep.needs_resume) j["continue_with"] = resume;
    std::cout << dump(j) << std::endl;
    return;
  }
  std::cout << what << " recorded for run " << shown(run_id);
  if (!rep.node_id.empty())
    std::cout << " (node " << shown(to_string(node_key{rep.node_id, rep.iteration})) << ")";
  if (rep.needs_resume)
    std::cout << "; no process drives the run: `" << shown(resume)
              << "` continues it (or `smithers supervise`)\n";
  else
    std::cout << "; the process driving the run takes it within a second\n";
}

void add_decide(CLI::App& app, const globals& g, int& result, bool approve) {
  auto a = std::make_shared<decide_args>();
  auto* cmd = app.add_subcommand(approve ? "approve" : "deny",
                                 approve ? "approve what a node of a run waits for"
                                         : "deny what a node of a run waits for");
  cmd->add_option("run_id", a->run_id, "run id")->required();
  cmd->add_option("--node", a->node, "the node waiting for approval")->required();
  auto* it = cmd->add_option("--iteration", a->iteration,
                             "its loop iteration (default: the one that waits)");
  cmd->add_option("--by", a->by, "who decides (recorded with the decision)");
  cmd->add_option("--note", a->note, "why (recorded with the decision)");
  cmd->callback([&g, &result, a, it, approve] {
    std::optional<std::int64_t> iteration;
    if (it->count() > 0)
      iteration = parse_integer(a->iteration, "--iteration", 0, limits::max_loop_iterations);
    auto store = run_store::open_for(g.db, a->run_id);
    auto rep = store.decide(a->run_id, a->node, iteration, approve, a->by, a->note);
    print_stored(g, approve ? "approval" : "denial", rep, a->run_id);
    result = exit_finished;
  });
}

} // namespace

void add_wait_commands(CLI::App& app, const globals& g, int& result) {
  add_decide(app, g, result, true);
  add_decide(app, g, result, false);

  struct signal_args {
    std::string run_id;
    std::string name;
    std::string data;
  };
  auto s = std::make_shared<signal_args>();
  auto* cmd = app.add_subcommand("signal", "deliver a signal to a run");
  cmd->add_option("run_id", s->run_id, "run id")->required();
  cmd->add_option("name", s->name, "the signal's name")->required();
  auto* data =
      cmd->add_option("--data", s->data, "its payload: JSON, @file, or - for stdin (default {})");
  cmd->callback([&g, &result, s, data] {
    json payload = data->count() > 0 ? read_input(s->data, "--data") : json::object();
    auto store = run_store::open_for(g.db, s->run_id);
    auto rep = store.signal(s->run_id, s->name, payload);
    print_stored(g, "signal \"" + s->name + "\"", rep, s->run_id);
    result = exit_finished;
  });
}

} // namespace smithers::cli
