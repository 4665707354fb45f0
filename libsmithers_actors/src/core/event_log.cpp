#include "core/event_log.hpp"

namespace smithers::core {

pending_events event_log::announce(std::shared_ptr<const std::vector<store::pending_node>> nodes,
                                   std::int64_t at_ms) {
  pending_events pe{next_seq_, at_ms, std::move(nodes)};
  next_seq_ += static_cast<std::int64_t>(pe.nodes->size());
  events_.push_back(pe);
  return pe;
}

// Appends an event to the open chunk; a gap in seqs (nodes announced in
// between) or a large chunk closes it first.
void event_log::add_to_chunk(std::vector<store::command>& writes, const event& e) {
  constexpr std::size_t max_chunk_bytes = 256 * 1024;
  if (chunk_count_ > 0 &&
      (chunk_first_ + chunk_count_ != e.seq || chunk_text_.size() >= max_chunk_bytes))
    close_chunk(writes);
  if (chunk_count_ == 0) {
    chunk_first_ = e.seq;
    chunk_text_ = '[';
  } else {
    chunk_text_ += ',';
  }
  store::append_chunk_entry(chunk_text_, e.type, e.timestamp_ms, e.fields);
  ++chunk_count_;
}

void event_log::close_chunk(std::vector<store::command>& writes) {
  if (chunk_count_ == 0) return;
  chunk_text_ += ']';
  writes.push_back(store::append_events{run_id_, chunk_first_, chunk_count_, std::move(chunk_text_)});
  chunk_text_ = std::string();
  chunk_count_ = 0;
}

void event_log::publish(const std::string& run_id, const logged_event& item,
                        const std::function<void(const event&)>& publish) {
  if (const auto* e = std::get_if<event>(&item)) {
    publish(*e);
    return;
  }
  const auto& pe = std::get<pending_events>(item);
  event e;
  e.type = event_type::node_pending;
  e.run_id = run_id;
  e.timestamp_ms = pe.at_ms;
  for (std::size_t i = 0; i < pe.nodes->size(); ++i) {
    const auto& n = (*pe.nodes)[i];
    e.seq = pe.first_seq + static_cast<std::int64_t>(i);
    e.fields = json::object();
    e.fields.emplace("node_id", n.key.id);
    e.fields.emplace("iteration", n.key.iteration);
    publish(e);
  }
}

} // namespace smithers::core
