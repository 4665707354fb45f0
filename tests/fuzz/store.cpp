// Fuzz target `store`: the store's readers over a damaged database file.
// The base is a real database the CLI wrote (tests/fuzz/store_seed.sqlite:
// finished runs of examples/, a loop, a failed-and-retried task with a
// heartbeat, a run waiting for an approval with a decision and a signal in
// its inbox, a fork; 512-byte pages, WAL). The input damages a copy of it:
//
//   input := cut pick patch*      (or a whole file starting "SQLite format 3\0")
//   cut:    bit 7 set: the file is cut short by (cut & 0x7f) * 512 bytes
//   pick:   which run to read (bits 0-2: one of the seed's runs, 7: the
//           newest in the damaged runs table) and how (bit 3: through
//           admin's run_store, else store::reader)
//   patch:  3 bytes offset (little-endian, modulo the file's size),
//           1 byte length n, n bytes written there (the file grows if need be)
//
// The copy is opened as tools open it (store::database::open_existing,
// read-only; or admin's run_store::open_existing), the run lists and
// counts are read, then every reader of one run: store::reader's queries
// (nodes, attempts, events, frames, snapshots, trees, waits, inbox, ...),
// or run_store's inspect, events, timeline, latest_tree (what ps, inspect,
// logs and timeline print) and stats (/metrics). One run and one way per
// input keeps an execution in milliseconds; the fuzzer mutates the pick.
//
// Oracle: no crash (ASan, UBSan), no hang (libFuzzer's -timeout), no leak
// (LeakSanitizer) and no file descriptor left open; only smithers_error
// escapes (DB_ERROR for damage, RUN_NOT_FOUND for a run a damaged index
// lost); every JSON a reader returns serializes as the CLI prints it.
#include "fuzz_support.hpp"

#include "store/database.hpp"
#include "store/reader.hpp"
#include "util/clock.hpp"

#include <smithers/admin.hpp>

#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#ifndef SMITHERS_FUZZ_STORE_SEED
#define SMITHERS_FUZZ_STORE_SEED "tests/fuzz/store_seed.sqlite"
#endif

using namespace smithers;
namespace fs = std::filesystem;

namespace {

const std::string& base_image() {
  static const std::string image = [] {
    const char* env = std::getenv("SMITHERS_FUZZ_STORE_SEED");
    std::string path = env && *env ? env : SMITHERS_FUZZ_STORE_SEED;
    std::ifstream in(path, std::ios::binary);
    if (!in)
      fuzz::finding("cannot read the seed database " + path + " (set SMITHERS_FUZZ_STORE_SEED)");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  return image;
}

const std::string& work_dir() {
  static const std::string dir = [] {
    std::string base = fs::exists("/dev/shm") ? "/dev/shm" : fs::temp_directory_path().string();
    std::string templ = base + "/smithers-fuzz-store-XXXXXX";
    if (!::mkdtemp(templ.data())) fuzz::finding("mkdtemp failed");
    // The directory goes when the process ends normally (libFuzzer's -runs,
    // the replay); a crash leaves it for a look.
    static std::string removed = templ;
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(removed, ec);
    });
    return templ;
  }();
  return dir;
}

std::size_t open_fds() {
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d))
      ++n;
    ::closedir(d);
  }
  return n;
}

std::string damaged(std::string_view in) {
  static constexpr std::string_view magic{"SQLite format 3\0", 16};
  if (in.substr(0, magic.size()) == magic) return std::string(in);
  std::string img = base_image();
  if (in.size() < 2) return img;
  const auto h = static_cast<unsigned char>(in[0]);
  in.remove_prefix(2); // the cut, and the pick (read by the caller)
  if (h & 0x80) img.resize(img.size() - std::min(img.size(), std::size_t{h & 0x7fu} * 512));
  while (in.size() >= 4 && !img.empty()) {
    std::size_t off = static_cast<unsigned char>(in[0]) |
                      static_cast<std::size_t>(static_cast<unsigned char>(in[1])) << 8 |
                      static_cast<std::size_t>(static_cast<unsigned char>(in[2])) << 16;
    off %= img.size();
    std::size_t n = std::min<std::size_t>(static_cast<unsigned char>(in[3]), in.size() - 4);
    if (off + n > img.size()) img.resize(off + n);
    img.replace(off, n, in.substr(4, n));
    in.remove_prefix(4 + n);
  }
  return img;
}

void show(const json& j) {
  (void)j.dump(-1, ' ', false, json::error_handler_t::replace);
}

template <class F> void call(const char* what, F&& f) {
  fuzz::guarded(what, std::forward<F>(f), /*strict=*/false);
}

// The seed's runs (tests/fuzz/store_seed.sqlite); pick 7 is the newest
// run the damaged table lists.
const char* const seed_runs[] = {"hello-1", "gate-1",   "loop-1",    "flaky-1",
                                 "each-1",  "branch-1", "hello-fork"};

void read_with_reader(const std::string& path, std::string id) {
  std::optional<store::database> db;
  call("database::open_existing", [&] { db = store::database::open_existing(path); });
  if (!db) return;
  store::reader r(*db);
  const std::int64_t now = util::now_ms();
  std::set<std::string> workflows, owners;
  call("runs", [&] {
    for (const auto& run : r.runs("", 20)) {
      if (id.empty()) id = run.run_id;
      workflows.insert(run.workflow_name);
      owners.insert(run.owner_id);
      show(run.input);
      show(run.config);
      show(run.error);
    }
  });
  call("run_count", [&] { (void)r.run_count(""); });
  call("run_count status", [&] { (void)r.run_count("finished"); });
  call("runs_page", [&] { (void)r.runs_page("", "hello", 5, 1); });
  call("run_count workflow", [&] { (void)r.run_count("", "hello"); });
  call("runs_updated_since", [&] { (void)r.runs_updated_since(0, 10); });
  call("data_version", [&] { (void)r.data_version(); });
  call("ready_waiting_runs", [&] { (void)r.ready_waiting_runs(now); });
  for (const auto& w : workflows)
    call("cache_entries", [&] {
      for (const auto& [k, v] : r.cache_entries(w))
        show(v);
    });
  for (const auto& o : owners) {
    call("owner_requests", [&] { (void)r.owner_requests(o); });
    call("open_inbox_of_owner", [&] { (void)r.open_inbox_of_owner(o); });
  }
  {
    call("run", [&] { (void)r.run(id); });
    call("run_exists", [&] { (void)r.run_exists(id); });
    call("last_frame", [&] { (void)r.last_frame(id); });
    call("nodes", [&] { (void)r.nodes(id); });
    call("attempts", [&] {
      for (const auto& a : r.attempts(id)) {
        show(a.heartbeat);
        show(a.error);
        show(a.meta);
        if (a.output) show(*a.output);
      }
    });
    call("loops", [&] { (void)r.loops(id); });
    call("outputs", [&] { (void)r.outputs(id); });
    call("events", [&] { (void)r.events(id, -1, 500); });
    call("frames", [&] { (void)r.frames(id); });
    call("frame_states", [&] {
      for (const auto& [no, states] : r.frame_states(id))
        show(states);
    });
    call("children", [&] { (void)r.children(id); });
    call("waits", [&] { (void)r.waits(id); });
    call("open_inbox", [&] { (void)r.open_inbox(id); });
    call("open_signal_count", [&] { (void)r.open_signal_count(id); });
    call("frame_count", [&] { (void)r.frame_count(id); });
    call("max_event_seq", [&] { (void)r.max_event_seq(id); });
    call("wait_ready", [&] { (void)r.wait_ready(id, now); });
    call("frame_summaries", [&] {
      int n = 0;
      for (const auto& f : r.frame_summaries(id)) {
        if (++n > 6) break;
        call("snapshot_at", [&] { show(r.snapshot_at(id, f.frame_no)); });
        call("tree", [&] { show(r.tree(f.tree_hash)); });
      }
    });
  }
}

void read_with_run_store(const std::string& path, std::string id) {
  std::optional<run_store> s;
  call("run_store::open_existing", [&] { s = run_store::open_existing(path); });
  if (!s) return;
  call("run_store runs", [&] {
    for (const auto& run : s->runs("", 20)) {
      if (id.empty()) id = run.run_id;
      show(run.to_json());
    }
  });
  call("run_store runs query", [&] { (void)s->runs(run_query{"finished", "", 3, 1}); });
  call("run_store run_count", [&] { (void)s->run_count(run_query{}); });
  call("run_store stats", [&] { show(s->stats()); });
  call("run_store ready_waiting_runs", [&] { (void)s->ready_waiting_runs(); });
  {
    call("run_store find", [&] { (void)s->find(id); });
    call("run_store inspect", [&] { show(s->inspect(id)); });
    call("run_store events", [&] {
      for (const auto& e : s->events(id, -1, 500))
        show(e);
    });
    call("run_store timeline", [&] { show(s->timeline(id)); });
    call("run_store latest_tree", [&] { show(s->latest_tree(id)); });
    call("run_store wait_ready", [&] { (void)s->wait_ready(id); });
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = work_dir() + "/runs.db";
  for (const char* suffix : {"", "-wal", "-shm", "-journal"})
    ::unlink((path + suffix).c_str());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    const std::string img = damaged(fuzz::as_text(data, size));
    out.write(img.data(), static_cast<std::streamsize>(img.size()));
    if (!out) fuzz::finding("cannot write " + path);
  }
  const unsigned pick = size >= 2 ? data[1] : 0;
  const std::string id = (pick & 7) < 7 ? seed_runs[pick & 7] : "";
  const std::size_t fds = open_fds();
  if (pick & 8)
    read_with_run_store(path, id);
  else
    read_with_reader(path, id);
  fuzz::require(open_fds() == fds, "a reader left a file descriptor open");
  return 0;
}
