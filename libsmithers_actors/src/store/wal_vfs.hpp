// A SQLite VFS shim that writes each WAL commit with as few system calls as
// possible. SQLite writes a commit's WAL frames one call at a time — a
// 24-byte frame header, then the page — so a commit touching 6 pages costs
// 12 pwrite calls, the largest single cost of a sequence step on a file.
// The shim collects a WAL file's contiguous writes in memory and hands them
// to the real VFS in one write (at most 96 KB per call) when:
//   - the commit frame's page has been written (the frame header's "database
//     size after commit" field is non-zero: WAL file format, sqlite.org/
//     fileformat2.html#walformat), so a commit's frames are in the OS before
//     sqlite3_step(COMMIT) can return;
//   - SQLite touches the wal-index (any xShm* call on the database file, as
//     it does to publish a commit) — a second guard that does not depend on
//     the header parse;
//   - any other call reaches the WAL file (read, sync, truncate, size, file
//     control, close), a write is not contiguous, or 64 KB are collected
//     (a large transaction goes out in pieces; only its commit matters).
// Frames that never reach the file were never committed: a process killed
// with frames collected loses only a transaction that had not committed,
// the same as a kill a moment earlier. Every other file is passed through.
// No library here does this (SQLite ships no such VFS); it is ours.
#pragma once

#include <cstdint>

namespace smithers::store::wal_vfs {

/// Registers the shim (once, thread-safe; not as the default VFS) and
/// returns its name for sqlite3_open_v2.
const char* name();

/// Counters for tests: WAL writes SQLite asked for, and writes the shim
/// passed on to the real VFS, process-wide since start.
struct counters {
  std::uint64_t requested = 0;
  std::uint64_t passed_on = 0;
};
counters stats();

} // namespace smithers::store::wal_vfs
