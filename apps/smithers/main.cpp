#include <cstdio>
int main() {
  std::puts("smithers 0.1.0");
  return 0;
}
