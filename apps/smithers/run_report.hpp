// How a run driven by this process ended, printed for the user.
#pragma once

#include "cli.hpp"

#include <smithers/engine.hpp>

#include <ostream>

namespace smithers::cli {

/// Prints how a driven run ended and returns the command's exit code: a run
/// interrupted by `signal` (0: none) says how to resume it (128 + signal); a
/// run handed over to a forced resume elsewhere says so (exit 1); otherwise
/// the result — status, error and outputs as text, or `inspect`'s JSON — and
/// its status's exit code.
int report_run_end(const globals& g, const run_result& res, int signal);

/// What a waiting run waits for (inspect's "waiting" entries), each with
/// the commands that would continue it.
void print_waiting(const globals& g, const std::string& run_id, const json& waiting,
                   std::ostream& out);

} // namespace smithers::cli
