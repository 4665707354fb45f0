// Replays a run's stored events and checks every frame against them: at
// each FrameCommitted, the frame's snapshot (rebuilt from its keyframe and
// deltas) must hold exactly the node states the events so far describe.
#pragma once

#include "store/reader.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace test_support {

/// Calls on_frame(frame_no, keyframe) after each frame checked; returns the
/// node states after the last event.
inline std::map<std::string, std::string>
check_frames_against_events(const smithers::store::reader& rd, const std::string& run_id,
                            const std::function<void(std::int64_t, bool)>& on_frame = {}) {
  std::map<std::string, std::string> states;
  for (const auto& e : rd.events(run_id)) {
    const auto& p = e.payload;
    if (e.type == "NodePending")
      states[p["node_id"]] = "pending";
    else if (e.type == "NodeStarted")
      states[p["node_id"]] = "in-progress";
    else if (e.type == "NodeFinished")
      states[p["node_id"]] = "finished";
    else if (e.type == "FrameCommitted") {
      auto no = p["frame_no"].get<std::int64_t>();
      INFO("frame " << no);
      auto snap = rd.snapshot_at(run_id, no);
      REQUIRE(snap["states"].get<std::map<std::string, std::string>>() == states);
      if (on_frame) on_frame(no, p["keyframe"].get<bool>());
    }
  }
  return states;
}

} // namespace test_support
