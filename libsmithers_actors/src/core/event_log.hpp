// A run's events as the core produces them: numbered (seq), written to the
// store in chunks (one row per batch's events) and published once their
// batch has committed. Pure: the chunks become store commands.
#pragma once

#include "store/writer.hpp"

#include <smithers/events.hpp>
#include <smithers/node_key.hpp>

#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace smithers::core {

/// NodePending events of nodes entering the run, published from the same
/// compact list the store writes from.
struct pending_events {
  std::int64_t first_seq = 0;
  std::int64_t at_ms = 0;
  std::shared_ptr<const std::vector<store::pending_node>> nodes;
};

using logged_event = std::variant<event, pending_events>;

class event_log {
public:
  event_log(std::string run_id, std::int64_t next_seq) : run_id_(std::move(run_id)), next_seq_(next_seq) {}

  // Fields as alternating keys and values, each value put straight into the
  // event's object: an initializer list would first copy every value into a
  // json of its own (an output twice), on the path of every event.
  template <class... KV>
  void emit(std::vector<store::command>& writes, std::int64_t at_ms, const char* type, KV&&... kv) {
    static_assert(sizeof...(KV) % 2 == 0, "emit takes keys and values in pairs");
    event e;
    e.type = type;
    e.run_id = run_id_;
    e.seq = next_seq_++;
    e.timestamp_ms = at_ms;
    e.fields = json::object();
    put_fields(e.fields, std::forward<KV>(kv)...);
    add_to_chunk(writes, e);
    events_.push_back(std::move(e));
  }

  /// An event whose fields are already an object.
  void emit_fields(std::vector<store::command>& writes, std::int64_t at_ms, const char* type,
                   json fields) {
    event e;
    e.type = type;
    e.run_id = run_id_;
    e.seq = next_seq_++;
    e.timestamp_ms = at_ms;
    e.fields = std::move(fields);
    add_to_chunk(writes, e);
    events_.push_back(std::move(e));
  }

  /// An event of one node: node_id and iteration first.
  template <class... KV>
  void emit_node(std::vector<store::command>& writes, std::int64_t at_ms, const char* type,
                 const node_key& key, KV&&... kv) {
    emit(writes, at_ms, type, "node_id", key.id, "iteration", key.iteration,
         std::forward<KV>(kv)...);
  }

  /// Nodes entering the run: seqs for their NodePending events, written by
  /// the store from `nodes` (store::add_pending_nodes).
  pending_events announce(std::shared_ptr<const std::vector<store::pending_node>> nodes,
                          std::int64_t at_ms);

  /// Closes the open chunk into a store command.
  void close_chunk(std::vector<store::command>& writes);

  /// The events logged since the last call, in seq order.
  std::vector<logged_event> take() { return std::exchange(events_, {}); }

  std::int64_t next_seq() const { return next_seq_; }

  /// Hands each event to `publish` (NodePending lists unfolded).
  static void publish(const std::string& run_id, const logged_event& item,
                      const std::function<void(const event&)>& publish);

private:
  static void put_fields(json&) {}
  template <class V, class... Rest>
  static void put_fields(json& fields, const char* key, V&& value, Rest&&... rest) {
    fields.emplace(key, std::forward<V>(value));
    put_fields(fields, std::forward<Rest>(rest)...);
  }

  void add_to_chunk(std::vector<store::command>& writes, const event& e);

  std::string run_id_;
  std::int64_t next_seq_ = 0;
  std::vector<logged_event> events_;
  // Events since the last chunk was closed (seq chunk_first_ on), as the text
  // of the chunk the store will write: a batch's events go in one row.
  std::string chunk_text_;
  std::int64_t chunk_first_ = 0;
  std::int64_t chunk_count_ = 0;
};

} // namespace smithers::core
