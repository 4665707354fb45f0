// fuzz_replay: runs a fuzz target's function once over every file of a
// corpus, without fuzzing: what the normal test suite does with each
// corpus (ctest -R "fuzz replay"), and a way to reproduce a crash file
// with the ordinary (gcc) build.
//
//   fuzz_replay TARGET PATH...     each PATH a file or a directory (its files)
//   fuzz_replay --list             the targets
//
// Every target's source defines LLVMFuzzerTestOneInput; for this program
// tests/fuzz/CMakeLists.txt compiles each one with that name changed to
// smithers_fuzz_<target> (fuzz_targets.inc lists them). A finding aborts,
// naming the file first.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#define SMITHERS_FUZZ_TARGET(name)                                                                 \
  extern "C" int smithers_fuzz_##name(const std::uint8_t* data, std::size_t size);
#include "fuzz_targets.inc"
#undef SMITHERS_FUZZ_TARGET

namespace {

using target_fn = int (*)(const std::uint8_t*, std::size_t);

struct target {
  const char* name;
  target_fn fn;
};

const target targets[] = {
#define SMITHERS_FUZZ_TARGET(name) {#name, &smithers_fuzz_##name},
#include "fuzz_targets.inc"
#undef SMITHERS_FUZZ_TARGET
};

int usage() {
  std::fprintf(stderr, "usage: fuzz_replay TARGET PATH...  (targets:");
  for (const auto& t : targets)
    std::fprintf(stderr, " %s", t.name);
  std::fprintf(stderr, ")\n");
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  if (argc == 2 && std::strcmp(argv[1], "--list") == 0) {
    for (const auto& t : targets)
      std::printf("%s\n", t.name);
    return 0;
  }
  if (argc < 3) return usage();
  const target* t = nullptr;
  for (const auto& c : targets)
    if (std::strcmp(c.name, argv[1]) == 0) t = &c;
  if (!t) return usage();

  std::vector<fs::path> files;
  for (int i = 2; i < argc; ++i) {
    fs::path p = argv[i];
    if (fs::is_directory(p)) {
      for (const auto& e : fs::directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (fs::is_regular_file(p)) {
      files.push_back(p);
    } else {
      std::fprintf(stderr, "fuzz_replay: no such file or directory: %s\n", argv[i]);
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "fuzz_replay: no input files\n");
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::string bytes(std::istreambuf_iterator<char>(in), {});
    // Named before it runs: a finding aborts.
    std::fprintf(stderr, "%s\n", f.c_str());
    t->fn(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  std::printf("fuzz_replay %s: %zu inputs, no finding (%lld ms)\n", t->name, files.size(),
              static_cast<long long>(ms));
  return 0;
}
