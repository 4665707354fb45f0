#include "store/wal_vfs.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <vector>

namespace smithers::store::wal_vfs {

namespace {

constexpr std::int64_t wal_header_size = 32;
constexpr std::int64_t frame_header_size = 24;
// Collected writes go out once they reach 64 KB, in calls of at most 96 KB
// (the unix VFS writes at most 128 KB per call).
constexpr std::size_t flush_at = 64 * 1024;
constexpr std::size_t max_write = 96 * 1024;

std::atomic<std::uint64_t> requested_{0};
std::atomic<std::uint64_t> passed_on_{0};

struct shim_file;

// Per open WAL file: what is collected and where the pending commit ends.
struct wal_state {
  std::vector<unsigned char> buf;
  std::int64_t buf_off = 0;
  std::int64_t page_size = 0;   // 0: frame layout unknown, nothing collected
  std::int64_t commit_end = -1; // end offset of a commit frame being written
  int error = SQLITE_OK;        // a flush that failed where it could not report
  shim_file* db = nullptr;      // the database file whose WAL this is
};

// Our sqlite3_file: the real file follows it in the same allocation
// (szOsFile covers both).
struct shim_file {
  sqlite3_file base; // must be first: SQLite sees this
  sqlite3_file* real;
  wal_state* wal;      // WAL files only
  shim_file* wal_file; // main database files: their open WAL, if any
};

sqlite3_vfs* root_ = nullptr;
sqlite3_vfs vfs_;
sqlite3_io_methods methods_[3]; // by the real file's iVersion 1..3

shim_file* of(sqlite3_file* p) {
  return reinterpret_cast<shim_file*>(p);
}
const sqlite3_io_methods* real_methods(sqlite3_file* p) {
  return of(p)->real->pMethods;
}

bool is_ours(const sqlite3_file* f) {
  return f && f->pMethods >= methods_ && f->pMethods < methods_ + 3;
}

std::int64_t read_be32(const unsigned char* p) {
  return (std::int64_t{p[0]} << 24) | (std::int64_t{p[1]} << 16) | (std::int64_t{p[2]} << 8) |
         std::int64_t{p[3]};
}

int flush(shim_file* f) {
  wal_state& w = *f->wal;
  if (w.buf.empty()) return SQLITE_OK;
  int rc = SQLITE_OK;
  for (std::size_t done = 0; done < w.buf.size() && rc == SQLITE_OK;) {
    std::size_t n = std::min(max_write, w.buf.size() - done);
    rc = f->real->pMethods->xWrite(f->real, w.buf.data() + done, static_cast<int>(n),
                                   w.buf_off + static_cast<std::int64_t>(done));
    passed_on_.fetch_add(1, std::memory_order_relaxed);
    done += n;
  }
  // A commit frame only partly written stays pending (a 64 KB flush can
  // fall between its header and its page).
  if (w.buf_off + static_cast<std::int64_t>(w.buf.size()) >= w.commit_end) w.commit_end = -1;
  w.buf.clear();
  return rc;
}

// Flushes before any call that could observe the file.
int settle(shim_file* f) {
  if (!f->wal) return SQLITE_OK;
  if (f->wal->error != SQLITE_OK) {
    int rc = f->wal->error;
    f->wal->error = SQLITE_OK;
    return rc;
  }
  return flush(f);
}

// The page size, from the WAL header: seen being written, or read once from
// a WAL that already has one.
void learn_page_size(shim_file* f, const unsigned char* data, int n, std::int64_t off) {
  wal_state& w = *f->wal;
  unsigned char hdr[wal_header_size];
  if (off == 0 && n >= wal_header_size) {
    std::memcpy(hdr, data, wal_header_size);
  } else if (w.page_size != 0) {
    return;
  } else if (f->real->pMethods->xRead(f->real, hdr, wal_header_size, 0) != SQLITE_OK) {
    return; // no header yet: pass writes through until one is written
  }
  std::int64_t ps = read_be32(hdr + 8);
  if (ps == 1) ps = 65536;
  if (ps >= 512 && ps <= 65536 && (ps & (ps - 1)) == 0) w.page_size = ps;
}

// Notes a commit frame whose header lies in [off, off + n): the WAL file
// format's frame header carries, at bytes 4..7, the database size after a
// commit, and zero for every other frame.
void find_commit(wal_state& w, const unsigned char* data, int n, std::int64_t off) {
  const std::int64_t frame = frame_header_size + w.page_size;
  std::int64_t p = wal_header_size;
  if (off > p) p += ((off - p + frame - 1) / frame) * frame;
  for (; p + frame_header_size <= off + n; p += frame) {
    const unsigned char* h = data + (p - off);
    if (h[4] | h[5] | h[6] | h[7]) w.commit_end = std::max(w.commit_end, p + frame);
  }
}

int x_write(sqlite3_file* p, const void* data, int n, sqlite3_int64 off) {
  shim_file* f = of(p);
  if (!f->wal) return f->real->pMethods->xWrite(f->real, data, n, off);
  requested_.fetch_add(1, std::memory_order_relaxed);
  wal_state& w = *f->wal;
  if (w.error != SQLITE_OK) {
    int rc = w.error;
    w.error = SQLITE_OK;
    return rc;
  }
  if (!w.buf.empty() && off != w.buf_off + static_cast<std::int64_t>(w.buf.size()))
    if (int rc = flush(f); rc != SQLITE_OK) return rc;
  const auto* bytes = static_cast<const unsigned char*>(data);
  learn_page_size(f, bytes, n, off);
  if (w.page_size == 0) {
    passed_on_.fetch_add(1, std::memory_order_relaxed);
    return f->real->pMethods->xWrite(f->real, data, n, off);
  }
  find_commit(w, bytes, n, off);
  if (w.buf.empty()) w.buf_off = off;
  w.buf.insert(w.buf.end(), bytes, bytes + n);
  std::int64_t end = w.buf_off + static_cast<std::int64_t>(w.buf.size());
  if ((w.commit_end >= 0 && end >= w.commit_end) || w.buf.size() >= flush_at) return flush(f);
  return SQLITE_OK;
}

// Every other method settles the WAL's collected writes first.

int x_close(sqlite3_file* p) {
  shim_file* f = of(p);
  int rc = settle(f);
  if (f->wal) {
    if (f->wal->db) f->wal->db->wal_file = nullptr;
    delete f->wal;
    f->wal = nullptr;
  } else if (f->wal_file) {
    f->wal_file->wal->db = nullptr;
    f->wal_file = nullptr;
  }
  int rc2 = f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
  return rc != SQLITE_OK ? rc : rc2;
}

int x_read(sqlite3_file* p, void* b, int n, sqlite3_int64 off) {
  if (int rc = settle(of(p)); rc != SQLITE_OK) return rc;
  return real_methods(p)->xRead(of(p)->real, b, n, off);
}
int x_truncate(sqlite3_file* p, sqlite3_int64 size) {
  if (int rc = settle(of(p)); rc != SQLITE_OK) return rc;
  return real_methods(p)->xTruncate(of(p)->real, size);
}
int x_sync(sqlite3_file* p, int flags) {
  if (int rc = settle(of(p)); rc != SQLITE_OK) return rc;
  return real_methods(p)->xSync(of(p)->real, flags);
}
int x_file_size(sqlite3_file* p, sqlite3_int64* size) {
  if (int rc = settle(of(p)); rc != SQLITE_OK) return rc;
  return real_methods(p)->xFileSize(of(p)->real, size);
}
int x_lock(sqlite3_file* p, int level) {
  return real_methods(p)->xLock(of(p)->real, level);
}
int x_unlock(sqlite3_file* p, int level) {
  return real_methods(p)->xUnlock(of(p)->real, level);
}
int x_check_reserved(sqlite3_file* p, int* out) {
  return real_methods(p)->xCheckReservedLock(of(p)->real, out);
}
int x_file_control(sqlite3_file* p, int op, void* arg) {
  if (int rc = settle(of(p)); rc != SQLITE_OK) return rc;
  return real_methods(p)->xFileControl(of(p)->real, op, arg);
}
int x_sector_size(sqlite3_file* p) {
  return real_methods(p)->xSectorSize(of(p)->real);
}
int x_device_characteristics(sqlite3_file* p) {
  return real_methods(p)->xDeviceCharacteristics(of(p)->real);
}

// The wal-index lives in the database file's shared memory. SQLite
// publishes a commit there, so a main file's xShm* calls first put its
// WAL's collected writes in the file (where it cannot report an error, the
// WAL's next call does).
int settle_wal_of(sqlite3_file* p) {
  shim_file* f = of(p);
  if (!f->wal_file) return SQLITE_OK;
  int rc = flush(f->wal_file);
  if (rc != SQLITE_OK) f->wal_file->wal->error = rc;
  return rc;
}
int x_shm_map(sqlite3_file* p, int page, int size, int extend, void volatile** out) {
  settle_wal_of(p);
  return real_methods(p)->xShmMap(of(p)->real, page, size, extend, out);
}
int x_shm_lock(sqlite3_file* p, int offset, int n, int flags) {
  if (int rc = settle_wal_of(p); rc != SQLITE_OK) return rc;
  return real_methods(p)->xShmLock(of(p)->real, offset, n, flags);
}
void x_shm_barrier(sqlite3_file* p) {
  settle_wal_of(p);
  real_methods(p)->xShmBarrier(of(p)->real);
}
int x_shm_unmap(sqlite3_file* p, int del) {
  settle_wal_of(p);
  return real_methods(p)->xShmUnmap(of(p)->real, del);
}
int x_fetch(sqlite3_file* p, sqlite3_int64 off, int n, void** out) {
  if (int rc = settle(of(p)); rc != SQLITE_OK) return rc;
  return real_methods(p)->xFetch(of(p)->real, off, n, out);
}
int x_unfetch(sqlite3_file* p, sqlite3_int64 off, void* page) {
  return real_methods(p)->xUnfetch(of(p)->real, off, page);
}

int x_open(sqlite3_vfs*, const char* name, sqlite3_file* p, int flags, int* out_flags) {
  shim_file* f = of(p);
  f->base.pMethods = nullptr;
  f->real = reinterpret_cast<sqlite3_file*>(f + 1);
  f->wal = nullptr;
  f->wal_file = nullptr;
  int rc = root_->xOpen(root_, name, f->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    // SQLite calls xClose when pMethods is set: only if the real file has
    // one to close.
    if (f->real->pMethods)
      f->base.pMethods = &methods_[std::clamp(f->real->pMethods->iVersion, 1, 3) - 1];
    return rc;
  }
  if ((flags & SQLITE_OPEN_WAL) && name) {
    sqlite3_file* db = sqlite3_database_file_object(name);
    f->wal = new wal_state;
    if (is_ours(db)) {
      f->wal->db = of(db);
      of(db)->wal_file = f;
    }
  }
  f->base.pMethods = &methods_[std::clamp(f->real->pMethods->iVersion, 1, 3) - 1];
  return SQLITE_OK;
}

void register_once() {
  root_ = sqlite3_vfs_find(nullptr);
  vfs_ = *root_;
  vfs_.pNext = nullptr;
  vfs_.zName = "smithers-wal";
  vfs_.szOsFile = static_cast<int>(sizeof(shim_file)) + root_->szOsFile;
  vfs_.xOpen = x_open;
  for (int v = 1; v <= 3; ++v) {
    methods_[v - 1] = sqlite3_io_methods{v,
                                         x_close,
                                         x_read,
                                         x_write,
                                         x_truncate,
                                         x_sync,
                                         x_file_size,
                                         x_lock,
                                         x_unlock,
                                         x_check_reserved,
                                         x_file_control,
                                         x_sector_size,
                                         x_device_characteristics,
                                         v >= 2 ? x_shm_map : nullptr,
                                         v >= 2 ? x_shm_lock : nullptr,
                                         v >= 2 ? x_shm_barrier : nullptr,
                                         v >= 2 ? x_shm_unmap : nullptr,
                                         v >= 3 ? x_fetch : nullptr,
                                         v >= 3 ? x_unfetch : nullptr};
  }
  sqlite3_vfs_register(&vfs_, 0);
}

} // namespace

const char* name() {
  static std::once_flag once;
  std::call_once(once, register_once);
  return vfs_.zName;
}

counters stats() {
  return {requested_.load(std::memory_order_relaxed), passed_on_.load(std::memory_order_relaxed)};
}

} // namespace smithers::store::wal_vfs
