// The one way the CLI drives runs — `run`, `resume`, `fork --run` and
// `supervise`: an engine on the --db file with the built-in computes, under
// signal handling (signals.hpp).
#pragma once

#include "cli.hpp"
#include "signals.hpp"

#include "format/parse.hpp"

#include <smithers/engine.hpp>

#include <functional>
#include <string>

namespace smithers::cli {

/// An engine on a database file, its built-in computes registered, whose
/// runs the first of the signals of signal_guard interrupts. The signals
/// are blocked before the engine starts its threads.
class driving_engine {
public:
  /// Throws INVALID_ARGUMENT for bad --workers or TLS options.
  explicit driving_engine(const globals& g);

  engine& eng() { return eng_; }
  signal_guard& signals() { return signals_; }

private:
  signal_guard signals_; // first: constructed before the engine, destroyed after it
  engine eng_;
};

/// Starts or resumes one run with `eng`, handing it the event handler that
/// draws progress.
using run_begin = std::function<run_handle(engine&, event_handler)>;

/// Drives one run (started or resumed by `begin`) to its end with live
/// progress and signal handling, reports how it ended (run_report.hpp) and
/// returns the exit code.
int drive(const globals& g, const run_begin& begin);

/// Resumes `run_id` with the workflow parsed from the file at `path`,
/// recording the file's hash and git revision for the resume's comparison
/// with what the run started from.
run_handle resume_from_file(engine& eng, const std::string& run_id, const std::string& path,
                            spec::parse_result parsed, resume_options opts);

} // namespace smithers::cli
