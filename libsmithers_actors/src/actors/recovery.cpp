// Recovery from stored rows. No CAF.
#include "actors/recovery.hpp"

#include <smithers/errors.hpp>

#include <algorithm>

namespace smithers::actors {

void refuse_ended(const store::run_row& run) {
  auto status = run_status_from(run.status);
  if (status && is_terminal(*status))
    throw smithers_error(errc::run_not_resumable,
                         "run \"" + run.run_id + "\" has ended (" + run.status + ")");
}

} // namespace smithers::actors
