#include "core/node_table.hpp"

#include "util/json_text.hpp"

#include <smithers/status.hpp>

#include <string_view>
#include <unordered_set>

namespace smithers::core {

void node_table::set_written(task_slot& sl, const char* state) {
  if (!sl.written) ++written_count_;
  sl.written = state;
}

void node_table::note_state(sched::index t, const node_key& k, const char* state) {
  task_slot& sl = slot(t, k);
  set_written(sl, state);
  if (sl.in_delta) return;
  sl.in_delta = true;
  if (t >= 0)
    delta_.push_back(t);
  else
    dropped_delta_.push_back(k);
}

bool node_table::is_pending(const task_slot& sl) {
  if (!sl.written) return false;
  std::string_view w{sl.written};
  // A node waiting (for an approval, a timer, a signal) has not ended either.
  return w == to_string(node_state::pending) || w == to_string(node_state::waiting_approval) ||
         w == to_string(node_state::waiting_timer) || w == to_string(node_state::waiting_event);
}

void node_table::replan(const sched::plan* old, const sched::plan& next,
                        std::vector<sched::index>& old_index, std::vector<char>& returning) {
  const std::size_t n = next.task_count();
  std::vector<task_slot> slots(n);
  std::vector<char> kept(old ? old->task_count() : 0, 0);
  old_index.assign(n, -1);
  returning.assign(n, 0);
  for (std::size_t t = 0; t < n; ++t) {
    const node_key& k = next.keys[t];
    sched::index o = old ? old->find(k) : -1;
    if (o >= 0) {
      slots[t] = slots_[static_cast<std::size_t>(o)];
      kept[static_cast<std::size_t>(o)] = 1;
      old_index[t] = o;
      continue;
    }
    if (auto d = dropped_.find(k); d != dropped_.end()) {
      slots[t] = d->second;
      dropped_.erase(d);
      returning[t] = 1;
    }
  }
  // The frame's delta, re-indexed: dropped nodes still dropped, and those
  // dropped now (not a pass over every dropped node: a long loop drops a
  // body every iteration).
  std::vector<node_key> dropped_delta;
  for (auto& k : dropped_delta_)
    if (dropped_.count(k)) dropped_delta.push_back(std::move(k));
  for (std::size_t o = 0; o < kept.size(); ++o)
    if (!kept[o]) {
      dropped_[old->keys[o]] = slots_[o];
      if (slots_[o].in_delta) dropped_delta.push_back(old->keys[o]);
    }
  dropped_delta_ = std::move(dropped_delta);
  slots_ = std::move(slots);
  delta_.clear();
  for (std::size_t t = 0; t < n; ++t)
    if (slots_[t].in_delta) delta_.push_back(static_cast<sched::index>(t));
}

std::optional<frame_snapshot> node_table::take_frame(
    const sched::plan& p, const json& input, bool tree_changed,
    const std::unordered_map<std::string, loop_state>& loops,
    const std::vector<std::string>& loops_changed) {
  frame_snapshot f;
  f.changes = delta_.size() + dropped_delta_.size();
  if (f.changes == 0 && !tree_changed && loops_changed.empty()) return std::nullopt;
  f.keyframe = !wrote_keyframe_ || delta_since_key_ >= std::max<std::size_t>(64, written_count_);
  // The snapshot's text is written directly, in plan order: a keyframe of a
  // large run would otherwise be a JSON object (a sorted map) of every node,
  // built and dumped once per keyframe. Nodes are named as to_string() names
  // them: "id", "id@N", "fix@2@0" inside nested loops.
  std::string& snap = f.text;
  snap = R"({"states":{)";
  auto put = [&](const node_key& k, const char* state) {
    if (f.nodes++ > 0) snap += ',';
    if (k.iteration == 0 && k.id.find('@') == std::string::npos)
      util::append_json_string(snap, k.id);
    else
      util::append_json_string(snap, to_string(k));
    snap += ":\"";
    snap += state; // state names need no escaping
    snap += '"';
  };
  if (f.keyframe) {
    for (std::size_t t = 0; t < slots_.size(); ++t)
      if (slots_[t].written) put(p.keys[t], slots_[t].written);
    for (const auto& [k, sl] : dropped_)
      if (sl.written) put(k, sl.written);
  } else {
    for (auto t : delta_)
      put(p.keys[static_cast<std::size_t>(t)], slots_[static_cast<std::size_t>(t)].written);
    for (const auto& k : dropped_delta_)
      put(k, dropped_[k].written);
  }
  snap += '}';
  // {"loops":{id:{"done":b,"iteration":i}}}: what a fork or a reader of
  // this frame needs to know where each loop stood.
  auto put_loop = [&](bool first, const std::string& id, const loop_state& st) {
    if (!first) snap += ',';
    util::append_json_string(snap, id);
    snap += st.done ? R"(:{"done":true,"iteration":)" : R"(:{"done":false,"iteration":)";
    util::append_json_int(snap, st.iteration);
    snap += '}';
  };
  if (f.keyframe ? !loops.empty() : !loops_changed.empty()) {
    snap += R"(,"loops":{)";
    bool first = true;
    if (f.keyframe) {
      for (const auto& [id, st] : loops) {
        put_loop(first, id, st);
        first = false;
      }
    } else {
      std::unordered_set<std::string> put;
      for (const auto& id : loops_changed)
        if (auto it = loops.find(id); it != loops.end() && put.insert(id).second) {
          put_loop(first, id, it->second);
          first = false;
        }
    }
    snap += '}';
  }
  if (f.keyframe) {
    snap += R"(,"input":)";
    util::append_json(snap, input);
  }
  snap += '}';
  for (auto t : delta_)
    slots_[static_cast<std::size_t>(t)].in_delta = false;
  for (const auto& k : dropped_delta_)
    dropped_[k].in_delta = false;
  delta_.clear();
  dropped_delta_.clear();
  if (f.keyframe) {
    delta_since_key_ = 0;
    wrote_keyframe_ = true;
  } else {
    delta_since_key_ += f.changes;
  }
  return f;
}

} // namespace smithers::core
