// Recovery: which stored runs may be resumed at all (what a resumed run
// starts from is core::recover, src/core/recovery.hpp). No CAF: this file builds into
// smithers_core, so the unit tests link it.
#pragma once

#include "store/rows.hpp"

#include <smithers/status.hpp>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace smithers::actors {

/// RUN_NOT_RESUMABLE when the run has ended.
void refuse_ended(const store::run_row& run);

} // namespace smithers::actors
