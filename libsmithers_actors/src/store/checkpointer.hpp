// Background WAL checkpoints for the engine's write connection.
//
// SQLite's automatic checkpoint runs inside the COMMIT that crosses its
// threshold, on the writer's thread: it copies every page in the WAL back
// into the database file and syncs twice. On a 10,000-step sequence that is
// ~14 checkpoints and ~5 % of all samples in fdatasync alone; taking them
// out of the write path measured +12 % steps/s and +20 % fan-out tasks/s.
// So the write connection's automatic checkpoint is replaced by a WAL hook
// that hands the work to a thread with a connection of its own, which runs
// PASSIVE checkpoints beside the writer (never blocking it).
//
// A passive checkpoint cannot restart the WAL while the writer keeps
// appending (the writer restarts it only once every frame is backfilled), so
// under continuous writes the WAL would only grow. A hard cap bounds it:
// once the WAL holds `cap_frames` the writer checkpoints itself after its
// commit (waiting for a checkpoint of the thread under way to end first), as
// SQLite's automatic checkpoint would, with nothing being written meanwhile;
// most pages are already backfilled by then, and the next write transaction
// starts the WAL over. So the WAL never holds more than the cap and one
// commit.
//
// Durability is unchanged: a commit is in the WAL before COMMIT returns,
// exactly as before (synchronous=NORMAL syncs only at checkpoints).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

struct sqlite3;

namespace smithers::store {

class checkpointer {
public:
  /// Takes over checkpoints of `writer` (a WAL connection to `path`):
  /// background ones every `every_frames` new WAL frames, the writer's own
  /// at `cap_frames`. `full_sync`: the checkpoint connection syncs as
  /// synchronous=FULL does. Throws DB_ERROR if its connection cannot open.
  checkpointer(sqlite3* writer, const std::string& path, bool full_sync, int every_frames,
               int cap_frames, int restore_autocheckpoint);
  /// Stops the thread (a checkpoint under way finishes first), closes its
  /// connection and gives `writer` SQLite's automatic checkpoint back, every
  /// `restore_autocheckpoint` pages.
  ~checkpointer();
  checkpointer(const checkpointer&) = delete;
  checkpointer& operator=(const checkpointer&) = delete;

  /// Checkpoints finished so far: by the thread, and by the writer at the cap.
  std::int64_t background_checkpoints() const { return background_done_.load(); }
  std::int64_t capped_checkpoints() const { return capped_done_.load(); }

private:
  static int on_commit(void* self, sqlite3* db, const char* schema, int frames);
  void run();

  sqlite3* writer_;
  sqlite3* own_ = nullptr;
  const int every_;
  const int cap_;
  const int restore_;
  int requested_at_ = 0; // WAL frames when the last checkpoint was asked for (writer's thread)
  std::mutex mtx_;
  std::condition_variable cv_;   // to the thread: a checkpoint is wanted, or stop
  std::condition_variable idle_; // from the thread: its checkpoint is done
  bool wanted_ = false;
  bool running_ = false;
  bool stop_ = false;
  std::atomic<std::int64_t> background_done_{0};
  std::atomic<std::int64_t> capped_done_{0};
  std::thread thread_;
};

} // namespace smithers::store
