// run_store::stats: the database's figures for metrics (smithers/metrics.hpp).
#include "admin/run_store_impl.hpp"
#include "store/stats.hpp"

#include <smithers/metrics.hpp>

namespace smithers {

json run_store::stats() const {
  auto st = store::read_stats(impl_->db, metrics::duration_bounds());
  json runs = json::array();
  for (const auto& r : st.runs)
    runs.push_back({{"workflow", r.workflow}, {"status", r.status}, {"count", r.count}});
  json attempts = json::object();
  for (const auto& a : st.attempts)
    attempts[a.state] = a.count;
  const auto& h = st.attempt_durations;
  return {{"runs", std::move(runs)},
          {"attempts", std::move(attempts)},
          {"attempt_duration_seconds",
           {{"bounds", h.bounds_s},
            {"cumulative", h.cumulative},
            {"count", h.count},
            {"sum", h.sum_s}}}};
}

} // namespace smithers
