#include "store/checkpointer.hpp"

#include "util/fault.hpp"

#include "store/database.hpp"
#include "store/wal_vfs.hpp"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

namespace smithers::store {

checkpointer::checkpointer(sqlite3* writer, const std::string& path, bool full_sync,
                           int every_frames, int cap_frames, int restore_autocheckpoint)
    : writer_(writer), every_(every_frames), cap_(cap_frames), restore_(restore_autocheckpoint) {
  int rc = sqlite3_open_v2(path.c_str(), &own_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                           wal_vfs::name());
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(own_, full_sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                      nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = "cannot open the checkpoint connection to " + path + ": " +
                          (own_ ? sqlite3_errmsg(own_) : sqlite3_errstr(rc));
    sqlite3_close_v2(own_);
    throw smithers_error(errc::db_error, std::move(message));
  }
  thread_ = std::thread([this] { run(); });
  // Replaces the connection's automatic checkpoint (also a WAL hook).
  sqlite3_wal_hook(writer_, &checkpointer::on_commit, this);
}

checkpointer::~checkpointer() {
  sqlite3_wal_autocheckpoint(writer_, restore_);
  {
    std::lock_guard<std::mutex> lk(mtx_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
  sqlite3_close_v2(own_);
}

// On the writer's thread, after each commit; `frames` is the WAL's length.
int checkpointer::on_commit(void* arg, sqlite3* db, const char* schema, int frames) {
  auto* self = static_cast<checkpointer*>(arg);
  if (frames < self->requested_at_) self->requested_at_ = 0; // the WAL started over
  if (frames >= self->cap_) {
    {
      // Wait for a checkpoint of the thread that is under way (it would make
      // ours BUSY), so the WAL never grows past the cap and one commit.
      std::unique_lock<std::mutex> lk(self->mtx_);
      self->wanted_ = false;
      self->idle_.wait(lk, [self] { return !self->running_; });
    }
    // BUSY now: another process is checkpointing; the next commit tries again.
    int rc = sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    if (rc == SQLITE_OK) {
      self->requested_at_ = 0;
      self->capped_done_.fetch_add(1);
    } else if (rc != SQLITE_BUSY) {
      spdlog::warn("WAL checkpoint failed: {}", sqlite3_errmsg(db));
    }
    return SQLITE_OK; // an error here would report a commit that happened as failed
  }
  if (frames - self->requested_at_ >= self->every_) {
    self->requested_at_ = frames;
    {
      std::lock_guard<std::mutex> lk(self->mtx_);
      self->wanted_ = true;
    }
    self->cv_.notify_one();
  }
  return SQLITE_OK;
}

void checkpointer::run() {
  std::unique_lock<std::mutex> lk(mtx_);
  for (;;) {
    cv_.wait(lk, [this] { return wanted_ || stop_; });
    if (stop_) return;
    wanted_ = false;
    running_ = true;
    lk.unlock();
    // A fault here (util/fault.hpp) is a checkpoint that failed, or a crash
    // in the middle of one.
    bool injected = false;
    try {
      util::fault_point("store.checkpoint");
    } catch (const std::exception& e) {
      injected = true;
      spdlog::warn("background WAL checkpoint failed: {}", e.what());
    }
    int rc = injected ? SQLITE_IOERR
                      : sqlite3_wal_checkpoint_v2(own_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                                  nullptr);
    if (rc == SQLITE_OK)
      background_done_.fetch_add(1);
    else if (rc != SQLITE_BUSY && !injected) // BUSY: another connection is checkpointing
      spdlog::warn("background WAL checkpoint failed: {}", sqlite3_errmsg(own_));
    lk.lock();
    running_ = false;
    idle_.notify_all();
  }
}

} // namespace smithers::store
