// run_handle: waiting for a run's end and reading its result.
#include "actors/run_handle.hpp"

namespace smithers {

const std::string& run_handle::run_id() const {
  return st_->run_id;
}

run_result run_handle::wait() const {
  auto lk = st_->ended();
  return st_->result;
}

run_result run_handle::take() {
  auto lk = st_->ended();
  return std::move(st_->result);
}

void run_handle::await_end() const {
  st_->ended();
}

bool run_handle::wait_for(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lk(st_->mtx);
  return st_->cv.wait_for(lk, timeout, [&] { return st_->done; });
}

namespace actors {

run_handle ended_handle(run_result r) {
  auto st = std::make_shared<run_handle::state>();
  st->run_id = r.run_id;
  st->result = std::move(r);
  st->done = true;
  return run_handle{st};
}

} // namespace actors

} // namespace smithers
