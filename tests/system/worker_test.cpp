// Distribution through the smithers binary (docs/operations.md, "Workers"):
// real `smithers worker` processes on loopback ports, owners that send them
// attempts with --workers, and the failures a network of processes has — a
// worker killed (SIGKILL), hung (SIGSTOP), restarted; an owner killed; a
// cancel; peers that may not talk to a worker (plaintext against TLS, a
// certificate from another CA). Certificates are made here with `openssl`.
#include "system/cli_support.hpp"
#include "system/store_support.hpp"

#include "support/eventually.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <poll.h>

#include <atomic>
#include <csignal>
#include <map>
#include <mutex>
#include <set>
#include <thread>

using namespace smithers::system_test;
using smithers::json;
namespace store = smithers::store;
using namespace std::chrono_literals;

namespace {

// A port nobody listens on right now (the kernel's pick, released again).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool accepts_connections(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

/// A TCP relay on a loopback port to `target`, whose network can be cut:
/// after cut() it forwards nothing more, yet keeps every connection open —
/// to both ends the peer has gone silent, as when a cable is pulled.
class tcp_relay {
public:
  explicit tcp_relay(int target) : target_(target) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    REQUIRE(::listen(listen_fd_, 16) == 0);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~tcp_relay() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    acceptor_.join();
    std::lock_guard<std::mutex> lk(mtx_);
    for (auto& t : pumps_)
      t.join();
    for (int fd : fds_)
      ::close(fd);
  }
  std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }
  void cut() { cut_ = true; }

private:
  void accept_loop() {
    while (!stop_) {
      int c = ::accept(listen_fd_, nullptr, nullptr);
      if (c < 0) return;
      int t = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<std::uint16_t>(target_));
      if (cut_ || ::connect(t, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(c);
        ::close(t);
        continue;
      }
      std::lock_guard<std::mutex> lk(mtx_);
      fds_.push_back(c);
      fds_.push_back(t);
      pumps_.emplace_back([this, c, t] { pump(c, t); });
    }
  }
  void pump(int a, int b) {
    char buf[65536];
    while (!stop_) {
      if (cut_) { // silent, and open
        std::this_thread::sleep_for(20ms);
        continue;
      }
      pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      if (::poll(fds, 2, 50) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n <= 0) return;
        int to = i == 0 ? b : a;
        for (ssize_t off = 0; off < n;) {
          ssize_t w = ::write(to, buf + off, static_cast<std::size_t>(n - off));
          if (w <= 0) return;
          off += w;
        }
      }
    }
  }
  int target_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false}, cut_{false};
  std::mutex mtx_;
  std::vector<int> fds_;
  std::thread acceptor_;
  std::vector<std::thread> pumps_;
};

struct worker_proc {
  std::unique_ptr<child_process> proc;
  int port = 0;
  std::string addr() const { return "127.0.0.1:" + std::to_string(port); }
};

/// `smithers worker` on a free loopback port, once it accepts connections.
worker_proc start_worker(const sandbox& sb, std::vector<std::string> extra = {}, int port = 0) {
  worker_proc w;
  w.port = port ? port : free_port();
  std::vector<std::string> args{"worker", "--listen", "127.0.0.1:" + std::to_string(w.port)};
  args.insert(args.end(), extra.begin(), extra.end());
  w.proc = sb.start(args);
  bool up = test_support::eventually([&] { return accepts_connections(w.port); }, 10s);
  if (!up) INFO(w.proc->wait());
  REQUIRE(up);
  return w;
}

/// The certificates of a test: a CA, a worker's and an owner's signed by
/// it, and an intruder's signed by another CA.
struct pki {
  std::string dir;
  std::string file(const std::string& name) const { return dir + "/" + name; }
  std::vector<std::string> tls(const std::string& who, const std::string& ca = "ca.pem") const {
    return {"--tls-cert",       file(who + ".pem"), "--tls-key",
            file(who + ".key"), "--tls-ca",         file(ca)};
  }
};

pki make_pki(const sandbox& sb) {
  pki p{sb.dir().path() + "/pki"};
  std::string script = R"(set -e
mkdir -p pki && cd pki
ca() { openssl req -x509 -newkey rsa:2048 -nodes -keyout $1.key -out $1.pem -days 2 -subj "/CN=$1"; }
cert() { openssl req -newkey rsa:2048 -nodes -keyout $1.key -out $1.csr -subj "/CN=$1"
         openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem -days 2; }
ca ca; ca other-ca
cert worker ca; cert owner ca; cert intruder other-ca
)";
  command_options opts;
  opts.cwd = sb.dir().path();
  auto r = run_command({"sh", "-c", script}, opts);
  INFO(r);
  REQUIRE(r.exit_code == 0);
  return p;
}

/// A command task that appends its id to `side`, sleeps, outputs {"node": id}.
json side_effect_task(const std::string& id, const std::string& side, const std::string& sleep) {
  return {{"task", id},
          {"run", json::array({"sh", "-c",
                               "echo " + id + " >> '" + side + "'; sleep " + sleep +
                                   "; echo '{\"node\":\"" + id + "\"}'"})}};
}

json fan_out(const std::string& name, int n, const std::string& side, const std::string& sleep) {
  json tasks = json::array();
  for (int i = 0; i < n; ++i)
    tasks.push_back(side_effect_task("t" + std::to_string(i), side, sleep));
  return {{"name", name}, {"max_concurrency", 64}, {"root", {{"parallel", tasks}}}};
}

/// Every node finished by exactly one attempt; returns the attempts per state.
std::map<std::string, int> check_each_finished_once(const json& inspected, int nodes) {
  std::map<std::string, int> finished, states;
  for (const auto& a : inspected["attempts"]) {
    ++states[a["state"].get<std::string>()];
    if (a["state"] == "finished") ++finished[a["node_id"].get<std::string>()];
  }
  CHECK(finished.size() == static_cast<std::size_t>(nodes));
  for (const auto& [node, n] : finished) {
    INFO(node);
    CHECK(n == 1);
  }
  return states;
}

/// Attempts in progress on `worker` (read straight from the store).
int in_flight_on(const sandbox& sb, const std::string& run_id, const std::string& worker) {
  if (!sb.db_exists()) return 0;
  int n = 0;
  for (const auto& a : db_attempts(sb.db(), run_id))
    if (a.state == "in-progress" && a.worker == worker) ++n;
  return n;
}

/// Waits for the run's WorkerLost event of `worker`; returns its time.
std::int64_t worker_lost_at(const sandbox& sb, const std::string& run_id,
                            const std::string& worker) {
  std::int64_t at = 0;
  test_support::eventually(
      [&] {
        for (const auto& e : db_events(sb.db(), run_id))
          if (e.type == "WorkerLost" && e.payload.value("worker", "") == worker) {
            at = e.timestamp_ms;
            return true;
          }
        return false;
      },
      15s);
  return at;
}

/// A node loss during a fan-out over two workers: `hurt` does it to the
/// first worker once attempts run there. The run must finish with every
/// task finished once, the lost attempts recorded WORKER_LOST (not counted
/// as the tasks' retries), the loss noticed within 5 s.
void lose_a_worker_mid_run(int sig, bool tls = false) {
  sandbox sb;
  std::vector<std::string> worker_args{"--slots", "4"}, owner_tls;
  if (tls) {
    auto p = make_pki(sb);
    auto t = p.tls("worker");
    worker_args.insert(worker_args.end(), t.begin(), t.end());
    owner_tls = p.tls("owner");
  }
  auto w1 = start_worker(sb, worker_args);
  auto w2 = start_worker(sb, worker_args);
  std::string side = sb.file("side.txt");
  const int nodes = 48;
  sb.write("wf.json", fan_out("fan", nodes, side, "0.25"));
  // sig 0: the network to the first worker is cut (through a relay).
  std::unique_ptr<tcp_relay> relay;
  std::string first = w1.addr();
  if (sig == 0) {
    relay = std::make_unique<tcp_relay>(w1.port);
    first = relay->addr();
  }
  std::vector<std::string> run_args{"run", "wf.json",   "--run-id",
                                    "r",   "--workers", first + "," + w2.addr()};
  run_args.insert(run_args.end(), owner_tls.begin(), owner_tls.end());
  auto owner = sb.start(run_args);
  REQUIRE(test_support::eventually([&] { return in_flight_on(sb, "r", first) > 0; }, 30s));
  std::int64_t hurt_at = wall_ms();
  if (relay)
    relay->cut();
  else
    w1.proc->signal(sig);
  auto res = owner->wait();
  INFO(res);
  REQUIRE(res.exit_code == 0);
  std::int64_t lost_at = worker_lost_at(sb, "r", first);
  REQUIRE(lost_at > 0);
  CHECK(lost_at - hurt_at < 5000);
  auto j = sb.inspect("r");
  auto states = check_each_finished_once(j, nodes);
  int lost = 0, on_w1 = 0, on_w2 = 0;
  for (const auto& a : j["attempts"]) {
    if (a["worker"] == first) ++on_w1;
    if (a["worker"] == w2.addr()) ++on_w2;
    if (a["state"] == "failed") {
      CHECK(a["error"]["code"] == "WORKER_LOST");
      CHECK(a["worker"] == first);
      ++lost;
    }
  }
  CHECK(lost >= 1);
  CHECK(on_w1 >= 1);
  CHECK(on_w2 >= 1);
  // Re-dispatched at once and for free (the tasks have no retries).
  auto events = sb.events("r");
  auto retrying = of_type(events, "NodeRetrying");
  CHECK(retrying.size() == static_cast<std::size_t>(lost));
  for (const auto& e : retrying) {
    CHECK(e["redispatch"] == true);
    CHECK(e["delay_ms"] == 0);
  }
  CHECK(of_type(events, "WorkerLost").size() == 1);
  CHECK(of_type(events, "WorkerJoined").size() >= 2);
  if (sig == SIGSTOP) w1.proc->signal(SIGCONT);
}

} // namespace

TEST_CASE("a 2,000-task workflow runs over two workers, on both") {
  sandbox sb;
  auto w1 = start_worker(sb, {"--slots", "4"});
  auto w2 = start_worker(sb, {"--slots", "4"});
  json tasks = json::array();
  for (int i = 0; i < 2000; ++i) {
    if (i % 100 == 0)
      tasks.push_back(
          {{"task", "c" + std::to_string(i)},
           {"run", json::array({"sh", "-c", "echo '{\"n\":" + std::to_string(i) + "}'"})}});
    else
      tasks.push_back({{"task", "n" + std::to_string(i)}, {"compute", i % 2 ? "noop" : "echo"}});
  }
  tasks.push_back({{"task", "v"}, {"value", {{"stays", "here"}}}});
  sb.write("wf.json",
           json{{"name", "big"}, {"max_concurrency", 128}, {"root", {{"parallel", tasks}}}});
  auto r =
      sb.cli_json({"run", "wf.json", "--run-id", "big", "--workers", w1.addr() + "," + w2.addr()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto j = sb.inspect("big");
  check_each_finished_once(j, 2001);
  std::map<std::string, int> by_worker;
  for (const auto& a : j["attempts"])
    ++by_worker[a["worker"].is_null() ? "owner" : a["worker"].get<std::string>()];
  CHECK(by_worker[w1.addr()] > 100);
  CHECK(by_worker[w2.addr()] > 100);
  CHECK(by_worker["owner"] == 1); // the value task
  CHECK(j["outputs"]["c1900"] == json{{"n", 1900}});
  CHECK(j["outputs"]["n2"]["node_id"] == "n2");
  // The text view says where each attempt ran.
  auto text = sb.cli({"inspect", "big"});
  CHECK(contains(text.out, "on " + w1.addr()));
}

TEST_CASE("a worker killed with SIGKILL mid-run: its attempts run again elsewhere") {
  lose_a_worker_mid_run(SIGKILL);
}

TEST_CASE("two workers with mutual TLS, one killed with SIGKILL: the run finishes") {
  lose_a_worker_mid_run(SIGKILL, true);
}

TEST_CASE("a hung worker (SIGSTOP) is noticed within 5 s and its work moved") {
  lose_a_worker_mid_run(SIGSTOP);
}

TEST_CASE("a worker whose network is gone is noticed within 5 s and its work moved") {
  lose_a_worker_mid_run(0);
}

TEST_CASE("a worker that comes back is used again") {
  sandbox sb;
  int port = free_port();
  auto w = start_worker(sb, {"--slots", "2"}, port);
  std::string side = sb.file("side.txt");
  sb.write("wf.json", fan_out("back", 6, side, "0.3"));
  auto owner = sb.start({"run", "wf.json", "--run-id", "r", "--workers", w.addr()});
  REQUIRE(test_support::eventually([&] { return in_flight_on(sb, "r", w.addr()) > 0; }, 30s));
  w.proc->signal(SIGKILL);
  w.proc->wait();
  REQUIRE(worker_lost_at(sb, "r", w.addr()) > 0);
  // Nothing to run on meanwhile: the tasks wait, nothing fails for good.
  sleep_ms(500);
  CHECK(db_run(sb.db(), "r")->status == "running");
  auto again = start_worker(sb, {"--slots", "2"}, port);
  auto res = owner->wait();
  INFO(res);
  REQUIRE(res.exit_code == 0);
  auto events = sb.events("r");
  CHECK(of_type(events, "WorkerJoined").size() == 2);
  auto j = sb.inspect("r");
  check_each_finished_once(j, 6);
}

TEST_CASE("with --local-fallback and no worker reachable, the owner runs the tasks") {
  sandbox sb;
  std::string side = sb.file("side.txt");
  sb.write("wf.json", fan_out("fallback", 3, side, "0"));
  auto r = sb.cli({"run", "wf.json", "--run-id", "r", "--workers",
                   "127.0.0.1:" + std::to_string(free_port()), "--local-fallback"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  json inspected = sb.inspect("r");
  for (const auto& a : inspected["attempts"])
    CHECK(a["worker"].is_null());
}

TEST_CASE("a compute function no worker offers fails with WORKER_UNAVAILABLE") {
  sandbox sb;
  auto w = start_worker(sb);
  sb.write("wf.json",
           json{{"name", "nofn"}, {"root", {{"task", "x"}, {"compute", "not_served_anywhere"}}}});
  // Accepted: with workers, a function this process lacks may be a worker's.
  auto r = sb.cli({"run", "wf.json", "--run-id", "r", "--workers", w.addr()});
  INFO(r);
  CHECK(r.exit_code == 1);
  auto j = sb.inspect("r");
  REQUIRE(j["attempts"].size() >= 1);
  CHECK(j["attempts"][0]["error"]["code"] == "WORKER_UNAVAILABLE");
  // Without workers the same file is refused before anything is written.
  auto refused = sb.cli({"run", "wf.json", "--run-id", "r2"});
  CHECK(refused.exit_code == 4);
  CHECK(contains(refused.err, "not_served_anywhere"));
}

TEST_CASE("timeouts, heartbeats and heartbeat timeouts of remote tasks") {
  sandbox sb;
  auto w = start_worker(sb);
  json tasks = json::array(
      {json{{"task", "slow"}, {"run", json::array({"sleep", "5"})}, {"timeout_ms", 300}},
       json{{"task", "silent"},
            {"run", json::array({"sh", "-c", "echo '::heartbeat'; sleep 5"})},
            {"heartbeat_timeout_ms", 400}},
       json{{"task", "beats"},
            {"run", json::array({"sh", "-c",
                                 "for i in 1 2 3; do echo \"::heartbeat {\\\"step\\\":$i}\"; "
                                 "sleep 0.1; done; echo '{\"ok\":true}'"})},
            {"heartbeat_timeout_ms", 2000}}});
  for (auto& t : tasks)
    t["continue_on_fail"] = true;
  sb.write("wf.json", json{{"name", "hb"}, {"root", {{"parallel", tasks}}}});
  auto start = wall_ms();
  auto r = sb.cli({"run", "wf.json", "--run-id", "r", "--workers", w.addr()});
  INFO(r);
  CHECK(wall_ms() - start < 4500); // neither sleep 5 ran to its end
  auto j = sb.inspect("r");
  auto slow = attempts_of(j, "slow");
  REQUIRE(slow.size() == 1);
  CHECK(slow[0]["error"]["code"] == "TASK_TIMEOUT");
  CHECK(slow[0]["worker"] == w.addr());
  auto silent = attempts_of(j, "silent");
  REQUIRE(silent.size() == 1);
  CHECK(silent[0]["error"]["code"] == "TASK_HEARTBEAT_TIMEOUT");
  auto beats = attempts_of(j, "beats");
  REQUIRE(beats.size() == 1);
  CHECK(beats[0]["state"] == "finished");
  CHECK(beats[0]["heartbeat_bytes"].get<int>() > 0);
  auto attempts = db_attempts(sb.db(), "r");
  for (const auto& a : attempts)
    if (a.node_id == "beats") CHECK(a.heartbeat == json{{"step", 3}});
  auto events = sb.events("r");
  CHECK(of_type(events, "TaskHeartbeat").size() >= 1);
}

TEST_CASE("cancel ends the processes of remote attempts") {
  sandbox sb;
  auto w = start_worker(sb);
  std::string pidfile = sb.file("pid.txt");
  sb.write(
      "wf.json",
      json{{"name", "long"},
           {"root",
            {{"task", "long"},
             {"run", json::array({"sh", "-c", "echo $$ > '" + pidfile + "'; exec sleep 60"})}}}});
  auto owner = sb.start({"run", "wf.json", "--run-id", "r", "--workers", w.addr()});
  REQUIRE(test_support::eventually(
      [&] { return file_exists(pidfile) && !read_file(pidfile).empty(); }, 20s));
  pid_t pid = static_cast<pid_t>(std::stol(read_file(pidfile)));
  REQUIRE(process_alive(pid));
  auto c = sb.cli({"cancel", "r"});
  INFO(c);
  CHECK(c.exit_code == 0);
  auto res = owner->wait();
  INFO(res);
  CHECK(res.exit_code == 2);
  CHECK(test_support::eventually([&] { return !process_alive(pid); }, 10s));
  auto a = attempts_of(sb.inspect("r"), "long");
  REQUIRE(a.size() == 1);
  CHECK(a[0]["state"] == "cancelled");
}

TEST_CASE("an owner killed with SIGKILL: the worker ends its processes, resume runs them again") {
  sandbox sb;
  auto w = start_worker(sb);
  std::string pidfile = sb.file("pid.txt");
  std::string marker = sb.file("second");
  // The first attempt waits long; the one after the resume finishes at once.
  sb.write("wf.json", json{{"name", "orphan"},
                           {"root",
                            {{"task", "job"},
                             {"run", json::array({"sh", "-c",
                                                  "if [ -e '" + marker +
                                                      "' ]; then echo '{\"again\":true}'; "
                                                      "exit 0; fi; echo $$ > '" +
                                                      pidfile + "'; exec sleep 60"})}}}});
  auto owner = sb.start({"run", "wf.json", "--run-id", "r", "--workers", w.addr()});
  REQUIRE(test_support::eventually(
      [&] { return file_exists(pidfile) && !read_file(pidfile).empty(); }, 20s));
  pid_t pid = static_cast<pid_t>(std::stol(read_file(pidfile)));
  owner->signal(SIGKILL);
  owner->wait();
  // The worker loses the owner and ends what it ran for it.
  CHECK(test_support::eventually([&] { return !process_alive(pid); }, 10s));
  sb.write("second", std::string{"x"});
  auto r = sb.cli({"resume", "r", "--workers", w.addr()});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto a = attempts_of(sb.inspect("r"), "job");
  REQUIRE(a.size() == 2);
  CHECK(a[0]["state"] == "cancelled");
  CHECK(a[1]["state"] == "finished");
  CHECK(a[1]["worker"] == w.addr());
}

TEST_CASE("mutual TLS: owners with a certificate from the CA run; others are refused") {
  sandbox sb;
  auto p = make_pki(sb);
  auto w = start_worker(sb, p.tls("worker"));
  std::string side = sb.file("side.txt");
  sb.write("wf.json", fan_out("tls", 4, side, "0"));
  auto args = [&](const std::string& id, std::vector<std::string> tls) {
    std::vector<std::string> a{"run", "wf.json", "--run-id", id, "--workers", w.addr()};
    a.insert(a.end(), tls.begin(), tls.end());
    return a;
  };
  auto ok = sb.cli(args("good", p.tls("owner")));
  INFO(ok);
  REQUIRE(ok.exit_code == 0);
  json inspected = sb.inspect("good");
  for (const auto& a : inspected["attempts"])
    CHECK(a["worker"] == w.addr());
  REQUIRE(count_lines(read_file(side), "t0") == 1);

  // A good owner's run in flight meanwhile must not notice any of it (one
  // connection's failure once broke the others': wire.cpp).
  sb.write("long.json", json{{"name", "long"},
                             {"root",
                              {{"sequence", json::array({side_effect_task("l1", side, "5"),
                                                         side_effect_task("l2", side, "5")})}}}});
  std::vector<std::string> long_args{"run", "long.json", "--run-id", "long", "--workers", w.addr()};
  for (const auto& a : p.tls("owner"))
    long_args.push_back(a);
  auto long_run = sb.start(long_args);
  REQUIRE(test_support::eventually([&] { return in_flight_on(sb, "long", w.addr()) > 0; }, 20s));

  // A plaintext owner, and one whose certificate another CA signed: the
  // connection fails within its timeout (no hang), nothing runs there, the
  // tasks wait for a worker they may use.
  for (auto [id, tls] : {std::pair{std::string{"plain"}, std::vector<std::string>{}},
                         std::pair{std::string{"intruder"}, p.tls("intruder", "other-ca.pem")}}) {
    INFO(id);
    auto owner = sb.start(args(id, tls));
    sleep_ms(4500);
    CHECK(count_lines(read_file(side), "t0") == 1);
    owner->signal(SIGTERM);
    auto res = owner->wait();
    CHECK(res.exit_code == 143);
    CHECK(contains(res.err, "cannot reach worker " + w.addr()));
    json inspected = sb.inspect(id);
    for (const auto& a : inspected["attempts"])
      CHECK(a["worker"].is_null());
  }
  // The worker itself is unharmed: a good owner still runs, and the run
  // that was in flight all along finishes without losing its worker.
  auto again = sb.cli(args("good2", p.tls("owner")));
  CHECK(again.exit_code == 0);
  auto long_res = long_run->wait();
  INFO(long_res);
  CHECK(long_res.exit_code == 0);
  CHECK(of_type(sb.events("long"), "WorkerLost").empty());
  CHECK(attempts_of(sb.inspect("long"), "l1").size() == 1);
}

TEST_CASE("worker and --workers options are checked before anything runs") {
  sandbox sb;
  auto p = make_pki(sb);
  struct bad {
    std::vector<std::string> args;
    std::string says;
  };
  std::vector<bad> cases{
      {{"worker", "--listen", "0.0.0.0:0"}, "loopback"},
      {{"worker", "--listen", "10.1.2.3:7000"}, "loopback"},
      {{"worker", "--listen", "localhost"}, "no port"},
      {{"worker", "--listen", "127.0.0.1:70000"}, "port"},
      {{"worker", "--listen", "127.0.0.1:0", "--slots", "0"}, "--slots"},
      {{"worker", "--listen", "127.0.0.1:0", "--tls-cert", p.file("worker.pem")}, "all three"},
      {{"worker", "--listen", "127.0.0.1:0", "--tls-cert", p.file("worker.pem"), "--tls-key",
        p.file("owner.key"), "--tls-ca", p.file("ca.pem")},
       "does not belong"},
      {{"worker", "--listen", "127.0.0.1:0", "--tls-cert", p.file("intruder.pem"), "--tls-key",
        p.file("intruder.key"), "--tls-ca", p.file("ca.pem")},
       "not signed by the CA"},
      {{"worker", "--listen", "127.0.0.1:0", "--tls-cert", p.file("nope.pem"), "--tls-key",
        p.file("worker.key"), "--tls-ca", p.file("ca.pem")},
       "cannot read"},
      {{"run", "wf.json", "--workers", "nohost"}, "no port"},
      {{"run", "wf.json", "--local-fallback"}, "--local-fallback needs --workers"},
      {{"run", "wf.json", "--tls-cert", p.file("owner.pem"), "--tls-key", p.file("owner.key"),
        "--tls-ca", p.file("ca.pem")},
       "need --workers"},
      {{"run", "wf.json", "--workers", "127.0.0.1:1", "--tls-cert", p.file("owner.pem")},
       "all three"},
  };
  sb.write("wf.json", good_workflow());
  for (const auto& c : cases) {
    INFO(c.args[0] << " " << c.args[1] << " " << c.args[2]);
    auto r = sb.cli(c.args, command_options{{}, {}, {}, {"SMITHERS_DB"}, 20s});
    INFO(r);
    CHECK(r.exit_code == 4);
    CHECK(contains(r.err, "INVALID_ARGUMENT"));
    CHECK(contains(r.err, c.says));
  }
  CHECK(!sb.db_exists()); // refused runs left no database behind
  // --insecure lets a worker listen beyond loopback without TLS.
  auto port = free_port();
  auto w = sb.start({"worker", "--listen", "0.0.0.0:" + std::to_string(port), "--insecure"});
  CHECK(test_support::eventually([&] { return accepts_connections(port); }, 10s));
}

TEST_CASE("a host program's own worker serves its compute function to `smithers run`") {
  sandbox sb;
  int port = free_port();
  std::string addr = "127.0.0.1:" + std::to_string(port);
  command_options opts;
  opts.cwd = sb.dir().path();
  child_process host({WORKER_HOST_BIN, addr}, opts);
  REQUIRE(test_support::eventually([&] { return accepts_connections(port); }, 10s));
  std::string wf = source_dir() + "/examples/worker_host/word-count.json";
  auto r = sb.cli_json(
      {"run", wf, "--run-id", "wc", "--input", R"({"text": "one two three"})", "--workers", addr});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = sb.inspect("wc");
  CHECK(j["outputs"]["count"] == json{{"words", 3}, {"chars", 13}});
  CHECK(j["outputs"]["report"] == json{{"summary", "3 words"}});
  for (const auto& a : j["attempts"])
    CHECK(a["worker"] == addr);
  // Its heartbeat (a checkpoint) came back with the result.
  for (const auto& a : db_attempts(sb.db(), "wc"))
    if (a.node_id == "count") CHECK(a.heartbeat == json{{"counted", 3}});
  host.signal(SIGTERM);
  auto out = host.wait();
  CHECK(out.exit_code == 0);
  CHECK(contains(out.out, "listening on " + addr));
  CHECK(contains(out.out, "stopped"));
}

TEST_CASE("a remote attempt's heartbeat timeout counts from when a worker takes it") {
  sandbox sb;
  auto w = start_worker(sb, {"--slots", "1"});
  // One slot: the second task waits for the first (about 1.2 s), longer
  // than its heartbeat timeout; waiting for a slot is not silence.
  json tasks = json::array();
  for (const char* id : {"a", "b"})
    tasks.push_back({{"task", id},
                     {"run", json::array({"sh", "-c",
                                          "for i in 1 2 3 4 5 6; do echo ::heartbeat; sleep 0.2; "
                                          "done; echo '{}'"})},
                     {"heartbeat_timeout_ms", 800}});
  sb.write("wf.json", json{{"name", "queued"}, {"root", {{"parallel", tasks}}}});
  auto r = sb.cli({"run", "wf.json", "--run-id", "r", "--workers", w.addr()});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = sb.inspect("r");
  check_each_finished_once(j, 2);
  CHECK(j["attempts"].size() == 2);
}

TEST_CASE("an agent task on a worker: its output, follow-ups and meta come back to the owner") {
  sandbox sb;
  auto w = start_worker(sb);
  json agent = {
      {"id", "claude"},
      {"command",
       {source_dir() + "/tests/fixtures/agents/fake-agent", "--mode", "fix-on-follow-up"}},
      {"env", {{"FAKE_AGENT_ANSWER", R"({"ok": true})"}}}};
  json schema = {{"type", "object"}, {"required", {"ok"}}};
  sb.write("wf.json", json{{"name", "remote-agent"},
                           {"root",
                            {{"task", "ask"},
                             {"agent", agent},
                             {"prompt", "is it ok?"},
                             {"output_schema", schema}}}});
  auto r = sb.cli({"run", "wf.json", "--run-id", "r", "--workers", w.addr()});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = sb.inspect("r");
  CHECK(j["outputs"]["ask"] == json{{"ok", true}});
  REQUIRE(j["attempts"].size() == 1);
  const auto& a = j["attempts"][0];
  CHECK(a["worker"] == w.addr());
  CHECK(a["agent"]["id"] == "claude");
  CHECK(a["agent"]["follow_ups"] == 1);
  auto events = sb.events("r");
  CHECK(of_type(events, "AgentRetry").size() == 1);
  auto out = of_type(events, "NodeOutput");
  REQUIRE(out.size() >= 4);
  CHECK(contains(out[0]["text"].get<std::string>(), "fake-agent"));
  // Every line precedes the end of its attempt.
  auto fin = of_type(events, "NodeFinished");
  REQUIRE(fin.size() == 1);
  CHECK(out.back()["seq"].get<std::int64_t>() < fin[0]["seq"].get<std::int64_t>());
}
