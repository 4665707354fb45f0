// The first task of the `cli/start` benchmark: writes CLOCK_MONOTONIC (the
// same clock in every process) in nanoseconds to the file it is given, so
// the benchmark can tell when `smithers run` got its first task running.
// No libraries: it starts in well under a millisecond. Its output is {}.
#include <cstdio>
#include <ctime>

int main(int argc, char** argv) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  if (argc != 2) return 2;
  FILE* f = fopen(argv[1], "w");
  if (!f) return 1;
  fprintf(f, "%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
  if (fclose(f) != 0) return 1;
  std::puts("{}"); // a command task's output is the JSON object on stdout
  return 0;
}
