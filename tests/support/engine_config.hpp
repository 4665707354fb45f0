// An engine in a test's temp dir: a real SQLite file, two CAF threads.
#pragma once

#include "support/temp_dir.hpp"

#include <smithers/engine.hpp>

namespace test_support {

inline smithers::engine_config config_in(const temp_dir& dir) {
  smithers::engine_config cfg;
  cfg.db_path = dir.path() + "/smithers.db";
  cfg.scheduler_threads = 2;
  return cfg;
}

} // namespace test_support
