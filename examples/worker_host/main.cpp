// A worker node that serves a compute function of its own, "word_count":
// owners anywhere (`smithers run --workers HOST:PORT`, or an engine with
// engine_config::workers) can run {"compute": "word_count"} tasks on it.
//
//   worker_host [HOST:PORT]    (default 127.0.0.1:7400; port 0: any free one)
//
// Prints "listening on HOST:PORT" and serves until SIGINT or SIGTERM.
#include <smithers/worker.hpp>

#include <csignal>
#include <iostream>
#include <pthread.h>
#include <sstream>

int main(int argc, char** argv) {
  // Blocked before the worker starts its threads; taken by sigwait below.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  try {
    smithers::worker_config cfg;
    cfg.listen = argc > 1 ? argv[1] : "127.0.0.1:7400";
    cfg.slots = 4;
    smithers::worker w{cfg};
    // The task's input carries the text; needs and heartbeats work as for
    // any compute task (smithers/task.hpp).
    w.register_compute("word_count", [](smithers::task_context& ctx) {
      std::string text = ctx.input().value("text", "");
      std::istringstream in{text};
      std::size_t words = 0;
      for (std::string word; in >> word;) {
        ++words;
        if (ctx.cancelled()) throw std::runtime_error("cancelled");
      }
      ctx.heartbeat({{"counted", words}});
      return smithers::json{{"words", words}, {"chars", text.size()}};
    });
    auto port = w.start();
    std::string host = cfg.listen.substr(0, cfg.listen.rfind(':'));
    std::cout << "listening on " << host << ":" << port << std::endl;
    int sig = 0;
    sigwait(&stop, &sig);
    w.stop();
    std::cout << "stopped" << std::endl;
    return 0;
  } catch (const smithers::smithers_error& e) {
    std::cerr << "smithers_error: " << e.what() << "\n";
    return 4;
  }
}
