// smithers cache clear: empty the task cache (docs/workflow-format.md,
// "Caching"; docs/operations.md, "The task cache").
#include "cli.hpp"

#include <smithers/admin.hpp>

#include <iostream>
#include <memory>

namespace smithers::cli {

void add_cache_command(CLI::App& app, const globals& g, int& result) {
  auto* cache = app.add_subcommand("cache", "manage the task cache");
  cache->require_subcommand(1);
  auto workflow = std::make_shared<std::string>();
  auto* clear = cache->add_subcommand("clear", "delete cached outputs (of one workflow, or all)");
  clear->add_option("--workflow", *workflow, "only this workflow's (its \"name\")");
  clear->callback([&g, &result, workflow] {
    std::int64_t removed = 0;
    // No database: nothing is cached, and none is created.
    if (auto store = run_store::open_existing(g.db)) removed = store->clear_cache(*workflow);
    if (g.json())
      std::cout << dump(json{{"removed", removed}, {"workflow", *workflow}}) << std::endl;
    else
      std::cout << "removed " << removed << " cached output(s)"
                << (workflow->empty() ? std::string{} : " of workflow " + shown(*workflow)) << "\n";
    result = exit_finished;
  });
}

} // namespace smithers::cli
