// Decisions and signals for a run, from any process (the CLI's approve, deny
// and signal; engine::approve, deny and signal): checked against what the
// run waits for and stored in its inbox, where the run's owner — now, or
// whoever resumes it — takes them (docs/waiting.md).
#pragma once

#include "store/database.hpp"
#include "store/rows.hpp"

#include <optional>
#include <string>

namespace smithers::store {

struct decision_request {
  std::string run_id;
  std::string node_id;
  std::optional<std::int64_t> iteration; // none: the one iteration of the node that waits
  bool approved = true;
  std::string by;
  std::string note;
  std::int64_t now_ms = 0;
};

/// Stores an approval or denial for a node that waits for one and has none
/// yet, in one transaction (of two deciders at once, exactly one wins).
/// Throws RUN_NOT_FOUND, INVALID_ARGUMENT (the run has ended; the node does
/// not wait for a decision, or has one; --by or --note too long) with
/// nothing written.
inbox_row record_decision(database& db, const decision_request& req);

struct signal_request {
  std::string run_id;
  std::string name;
  json payload = json::object();
  std::int64_t now_ms = 0;
};

/// Stores a signal for a run that has not ended; a node waiting for that
/// name takes it (the oldest first). Throws RUN_NOT_FOUND, INVALID_ARGUMENT
/// (the run has ended, a bad name), INVALID_INPUT (the payload's bounds).
inbox_row record_signal(database& db, const signal_request& req);

} // namespace smithers::store
