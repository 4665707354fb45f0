// run_store's state (smithers/admin.hpp), for the files that implement it.
#pragma once

#include <smithers/admin.hpp>

#include "store/database.hpp"

#include <string>

namespace smithers {

struct run_store::impl {
  std::string path;
  store::database db;
};

} // namespace smithers
