#include "store/inbox.hpp"

#include "store/reader.hpp"
#include "store/writer.hpp"
#include "util/ids.hpp"
#include "util/json_bounds.hpp"

#include <smithers/limits.hpp>
#include <smithers/status.hpp>

namespace smithers::store {

namespace {

run_row open_run(const reader& rd, const std::string& run_id) {
  auto run = rd.run(run_id);
  if (!run) throw smithers_error(errc::run_not_found, "no run with id \"" + run_id + "\"");
  auto st = run_status_from(run->status);
  if (st && is_terminal(*st))
    throw smithers_error(errc::invalid_argument,
                         "run \"" + run_id + "\" has already ended (" + run->status + ")");
  return *run;
}

void check_text(const std::string& text, const char* option, std::size_t limit) {
  if (text.size() > limit)
    throw smithers_error(errc::invalid_argument,
                         std::string{option} + " is " + std::to_string(text.size()) +
                             " bytes; the limit is " + std::to_string(limit),
                         {{"limit", limit}, {"actual", text.size()}});
  if (text.find('\0') != std::string::npos)
    throw smithers_error(errc::invalid_argument, std::string{option} + " contains a NUL byte");
  // Stored as JSON text: never changed silently into U+FFFD.
  if (!util::is_valid_utf8(text))
    throw smithers_error(errc::invalid_argument, std::string{option} + " is not valid UTF-8");
}

// The wait a decision is for: the node's waiting iteration when none is
// named (refused when several wait).
const wait_row& target_wait(const std::vector<wait_row>& waits, const decision_request& req,
                            const std::string& node_state) {
  const wait_row* found = nullptr;
  std::vector<std::int64_t> waiting;
  for (const auto& w : waits) {
    if (w.key.id != req.node_id) continue;
    if (req.iteration) {
      if (w.key.iteration == *req.iteration) found = &w;
      continue;
    }
    if (w.state == "waiting") {
      waiting.push_back(w.key.iteration);
      found = &w;
    } else if (!found || found->state != "waiting") {
      found = &w; // for the message
    }
  }
  std::string node = "node \"" + req.node_id + "\"" +
                     (req.iteration ? " iteration " + std::to_string(*req.iteration) : "");
  if (waiting.size() > 1) {
    std::string list;
    for (auto i : waiting)
      list += (list.empty() ? "" : ", ") + std::to_string(i);
    throw smithers_error(errc::invalid_argument,
                         node + " waits for approval in iterations " + list +
                             ": name one with --iteration",
                         {{"iterations", waiting}});
  }
  if (!found || (found->kind != "approval" && found->kind != "gate"))
    throw smithers_error(errc::invalid_argument,
                         node + " of run \"" + req.run_id + "\" is not waiting for approval" +
                             (node_state.empty() ? "" : " (it is " + node_state + ")"));
  if (found->state != "waiting")
    throw smithers_error(errc::invalid_argument, node + " of run \"" + req.run_id +
                                                     "\" was already decided (" + found->state +
                                                     ")");
  return *found;
}

} // namespace

inbox_row record_decision(database& db, const decision_request& req) {
  check_text(req.by, "--by", limits::max_decider_bytes);
  check_text(req.note, "--note", limits::max_note_bytes);
  if (req.node_id.empty()) throw smithers_error(errc::invalid_argument, "--node must not be empty");
  reader rd{db};
  open_run(rd, req.run_id);
  std::string state;
  for (const auto& n : rd.nodes(req.run_id))
    if (n.node_id == req.node_id && (!req.iteration || n.iteration == *req.iteration)) {
      state = n.state;
      if (state == to_string(node_state::waiting_approval)) break;
    }
  auto waits = rd.waits(req.run_id);
  const wait_row& w = target_wait(waits, req, state);
  for (const auto& i : rd.open_inbox(req.run_id))
    if (i.kind == "approval" && i.key == w.key)
      throw smithers_error(errc::invalid_argument,
                           "node " + to_string(w.key) + " of run \"" + req.run_id +
                               "\" already has a decision (" +
                               (i.payload.value("approved", false) ? "approved" : "denied") +
                               (i.payload.value("by", std::string{}).empty()
                                    ? std::string{}
                                    : " by " + i.payload.value("by", std::string{})) +
                               "), not yet taken by the run");
  inbox_row row;
  row.run_id = req.run_id;
  row.kind = "approval";
  row.key = w.key;
  row.payload = {
      {"approved", req.approved}, {"by", req.by}, {"note", req.note}, {"decided_ms", req.now_ms}};
  row.created_ms = req.now_ms;
  // Checked again inside the transaction (writer): a decider racing this
  // one finds the decision there and fails.
  writer{db}.apply({insert_inbox{row}});
  row.id = db.last_insert_rowid();
  return row;
}

inbox_row record_signal(database& db, const signal_request& req) {
  if (auto why = util::check_signal_name(req.name))
    throw smithers_error(errc::invalid_argument, "signal name \"" + req.name + "\": " + *why);
  if (auto err = util::check_signal_payload(req.payload)) throw smithers_error(*err);
  reader rd{db};
  open_run(rd, req.run_id);
  if (rd.open_signal_count(req.run_id) >= limits::max_open_signals)
    throw smithers_error(errc::invalid_argument,
                         "run \"" + req.run_id + "\" already holds " +
                             std::to_string(limits::max_open_signals) +
                             " signals that no node has taken",
                         {{"limit", limits::max_open_signals}});
  inbox_row row;
  row.run_id = req.run_id;
  row.kind = "signal";
  row.name = req.name;
  row.payload = req.payload;
  row.created_ms = req.now_ms;
  writer{db}.apply({insert_inbox{row}});
  row.id = db.last_insert_rowid();
  return row;
}

} // namespace smithers::store
