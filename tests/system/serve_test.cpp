// smithers serve over a real loopback socket (docs/operations.md, "Serving
// runs over HTTP"): every endpoint, every refusal with its code and status,
// Server-Sent Events that follow a live run and resume from Last-Event-ID,
// the token and origin rules, and the metrics text.
#include "support/exposition.hpp"
#include "system/serve_support.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

using namespace smithers::system_test;
using smithers::json;

namespace {

json body_json(const httplib::Result& r) {
  REQUIRE(r);
  INFO(r->body);
  return json::parse(r->body);
}

/// The error code of a JSON error response with `status`.
std::string refused(const httplib::Result& r, int status) {
  REQUIRE(r);
  INFO(r->status << " " << r->body);
  CHECK(r->status == status);
  auto j = json::parse(r->body);
  CHECK(j["message"].is_string());
  CHECK(!j["message"].get<std::string>().empty());
  return j.value("code", std::string{});
}

json hello_workflow() {
  return {{"name", "hello"},
          {"root", {{"sequence", {{{"task", "greet"}, {"value", {{"text", "hi"}}}}}}}}};
}

json gated_workflow() {
  return {{"name", "gated"},
          {"root",
           {{"sequence",
             {{{"task", "build"}, {"value", {{"ok", true}}}},
              {{"approval", "deploy"}, {"title", "ship it?"}},
              {{"task", "after"}, {"value", {{"done", true}}}}}}}}};
}

json signal_workflow() {
  return {{"name", "signalled"},
          {"root", {{"sequence", {{{"signal", "ci"}, {"name", "ci-done"}}}}}}};
}

/// Server-Sent Events as read off the wire.
struct sse_message {
  std::string id, type, data;
};

std::vector<sse_message> parse_sse(const std::string& text) {
  std::vector<sse_message> out;
  sse_message cur;
  std::istringstream in(text);
  std::string line;
  bool any = false;
  while (std::getline(in, line)) {
    if (line.empty()) {
      if (any) out.push_back(cur);
      cur = {};
      any = false;
      continue;
    }
    if (line[0] == ':') continue;
    auto colon = line.find(':');
    auto field = line.substr(0, colon);
    auto value = colon == std::string::npos ? "" : line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.erase(0, 1);
    if (field == "id") cur.id = value;
    if (field == "event") cur.type = value;
    if (field == "data") cur.data += value;
    any = true;
  }
  return out;
}

/// Reads a whole event stream (it ends when the run has ended).
std::vector<sse_message> read_stream(httplib::Client& c, const std::string& path,
                                     const httplib::Headers& headers = {}) {
  std::string text;
  auto r = c.Get(path.c_str(), headers, [&](const char* data, std::size_t n) {
    text.append(data, n);
    return true;
  });
  REQUIRE(r);
  INFO(text);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Content-Type").find("text/event-stream") == 0);
  return parse_sse(text);
}

} // namespace

TEST_CASE("serve: health, the runs list with filters and paging, a run as inspect shows it") {
  sandbox sb;
  sb.write("hello.json", hello_workflow());
  for (const char* id : {"r1", "r2", "r3"})
    REQUIRE(sb.cli({"run", "hello.json", "--run-id", id}).exit_code == 0);
  sb.write("gated.json", gated_workflow());
  REQUIRE(sb.cli({"run", "gated.json", "--run-id", "g1"}).exit_code == 3);

  serving srv{sb};
  auto c = srv.client();

  auto health = c->Get("/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(body_json(health)["status"] == "ok");

  auto all = body_json(c->Get("/v1/runs"));
  CHECK(all["total"] == 4);
  REQUIRE(all["runs"].size() == 4);
  CHECK(all["runs"][0]["run_id"] == "g1"); // newest first
  CHECK(all["runs"][0]["status"] == "waiting-approval");

  auto finished = body_json(c->Get("/v1/runs?status=finished&limit=2"));
  CHECK(finished["total"] == 3);
  REQUIRE(finished["runs"].size() == 2);
  CHECK(finished["runs"][0]["run_id"] == "r3");
  CHECK(finished["runs"][1]["run_id"] == "r2");
  auto page2 = body_json(c->Get("/v1/runs?status=finished&limit=2&offset=2"));
  REQUIRE(page2["runs"].size() == 1);
  CHECK(page2["runs"][0]["run_id"] == "r1");
  auto gated = body_json(c->Get("/v1/runs?workflow=gated"));
  CHECK(gated["total"] == 1);
  CHECK(body_json(c->Get("/v1/runs?workflow=nothing"))["runs"].empty());

  // The same JSON as `inspect --format json`, without the CLI's commands to paste.
  auto inspected = sb.inspect("g1");
  inspected.erase("continue_with");
  inspected.erase("resume");
  auto served = body_json(c->Get("/v1/runs/g1"));
  CHECK(served == inspected);
  CHECK(served["waiting"][0]["node_id"] == "deploy");

  auto tree = body_json(c->Get("/v1/runs/r1/tree"));
  CHECK(tree["tree"].contains("sequence"));
  CHECK(tree["states"]["greet"] == "finished");
}

TEST_CASE("serve: bad requests are refused with a code, a message and a status") {
  sandbox sb;
  sb.write("hello.json", hello_workflow());
  REQUIRE(sb.cli({"run", "hello.json", "--run-id", "r1"}).exit_code == 0);
  serving srv{sb};
  auto c = srv.client();

  CHECK(refused(c->Get("/v1/runs/nope"), 404) == "RUN_NOT_FOUND");
  CHECK(refused(c->Get("/v1/runs/nope/events"), 404) == "RUN_NOT_FOUND");
  CHECK(refused(c->Get("/v1/runs/nope/tree"), 404) == "RUN_NOT_FOUND");
  CHECK(refused(c->Get("/v2/whatever"), 404) == "NOT_FOUND");
  CHECK(refused(c->Get("/v1/runs?limit=0"), 400) == "INVALID_ARGUMENT");
  CHECK(refused(c->Get("/v1/runs?limit=abc"), 400) == "INVALID_ARGUMENT");
  CHECK(refused(c->Get("/v1/runs?limit=1001"), 400) == "INVALID_ARGUMENT");
  CHECK(refused(c->Get("/v1/runs?offset=-1"), 400) == "INVALID_ARGUMENT");
  CHECK(refused(c->Get("/v1/runs?status=bogus"), 400) == "INVALID_ARGUMENT");
  CHECK(refused(c->Get("/v1/runs/r1/events", {{"Last-Event-ID", "x1"}}), 400) ==
        "INVALID_ARGUMENT");

  auto wrong = c->Post("/v1/runs", "{}", "application/json");
  CHECK(refused(wrong, 405) == "METHOD_NOT_ALLOWED");
  CHECK(wrong->get_header_value("Allow") == "GET");
  CHECK(refused(c->Get("/v1/runs/r1/cancel"), 405) == "METHOD_NOT_ALLOWED");
  CHECK(refused(c->Delete("/v1/runs/r1/cancel"), 405) == "METHOD_NOT_ALLOWED");
  CHECK(refused(c->Patch("/v1/runs/r1", "{}", "application/json"), 405) == "METHOD_NOT_ALLOWED");

  // Bodies: not JSON, not an object, unknown fields, wrong types, too large.
  CHECK(refused(c->Post("/v1/runs/r1/approve", "{nope", "application/json"), 400) ==
        "INVALID_INPUT");
  CHECK(refused(c->Post("/v1/runs/r1/approve", "[1]", "application/json"), 400) == "INVALID_INPUT");
  CHECK(refused(c->Post("/v1/runs/r1/approve", R"({"node":"x","extra":1})", "application/json"),
                400) == "INVALID_ARGUMENT");
  CHECK(refused(c->Post("/v1/runs/r1/approve", R"({"node":7})", "application/json"), 400) ==
        "INVALID_ARGUMENT");
  CHECK(refused(c->Post("/v1/runs/r1/approve", R"({})", "application/json"), 400) ==
        "INVALID_ARGUMENT");
  CHECK(
      refused(c->Post("/v1/runs/r1/approve", R"({"node":"x","iteration":-1})", "application/json"),
              400) == "INVALID_ARGUMENT");
  CHECK(refused(c->Post("/v1/runs/r1/signal", R"({"data":{}})", "application/json"), 400) ==
        "INVALID_ARGUMENT");
  std::string deep(40, '[');
  deep += std::string(40, ']');
  CHECK(refused(c->Post("/v1/runs/r1/signal", R"({"name":"s","data":)" + deep + "}",
                        "application/json"),
                400) == "INVALID_INPUT");
  std::string huge = R"({"name":"s","data":")" + std::string(2 * 1024 * 1024, 'a') + "\"}";
  CHECK(refused(c->Post("/v1/runs/r1/signal", huge, "application/json"), 413) == "INVALID_INPUT");

  // Actions on a run that has ended: 409, with the CLI's code.
  CHECK(refused(c->Post("/v1/runs/r1/cancel", "", "application/json"), 409) == "INVALID_ARGUMENT");
  CHECK(refused(c->Post("/v1/runs/r1/approve", R"({"node":"greet"})", "application/json"), 409) ==
        "INVALID_ARGUMENT");
  CHECK(refused(c->Post("/v1/runs/r1/signal", R"({"name":"s"})", "application/json"), 409) ==
        "INVALID_ARGUMENT");
  CHECK(refused(c->Post("/v1/runs/nope/cancel", "", "application/json"), 404) == "RUN_NOT_FOUND");

  // Nothing was written by any of it.
  CHECK(sb.inspect("r1")["inbox"].empty());
  CHECK(sb.inspect("r1")["run"]["status"] == "finished");

  // The server is still up.
  auto health = c->Get("/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
}

TEST_CASE("serve: events of a run as a stream, resumed after Last-Event-ID") {
  sandbox sb;
  sb.write("hello.json", hello_workflow());
  REQUIRE(sb.cli({"run", "hello.json", "--run-id", "r1"}).exit_code == 0);
  auto stored = sb.events("r1");
  REQUIRE(stored.size() > 4);
  serving srv{sb};
  auto c = srv.client();

  auto all = read_stream(*c, "/v1/runs/r1/events");
  REQUIRE(all.size() == stored.size() + 1);
  for (std::size_t i = 0; i < stored.size(); ++i) {
    INFO(i);
    CHECK(all[i].id == std::to_string(i));
    CHECK(all[i].type == stored[i]["type"]);
    CHECK(json::parse(all[i].data) == stored[i]);
  }
  CHECK(all.back().type == "end");
  CHECK(json::parse(all.back().data)["status"] == "finished");

  auto rest = read_stream(*c, "/v1/runs/r1/events", {{"Last-Event-ID", "3"}});
  REQUIRE(rest.size() == stored.size() - 4 + 1);
  CHECK(rest.front().id == "4");
  auto after = read_stream(*c, "/v1/runs/r1/events?after=" + std::to_string(stored.size() - 1));
  REQUIRE(after.size() == 1);
  CHECK(after[0].type == "end");
}

TEST_CASE("serve: a live run followed over SSE and approved over HTTP runs to its end") {
  sandbox sb;
  sb.write("gated.json", gated_workflow());
  auto run = sb.start({"run", "gated.json", "--run-id", "g1", "--wait"});
  serving srv{sb};
  auto c = srv.client();
  REQUIRE(eventually([&] {
    auto r = c->Get("/v1/runs/g1");
    return r && r->status == 200 && json::parse(r->body)["run"]["status"] == "waiting-approval";
  }));

  // Follow the run from its start while it waits; the stream ends with it.
  std::string text;
  std::atomic<bool> streaming{false};
  std::thread follower([&] {
    auto fc = srv.client();
    fc->Get("/v1/runs/g1/events", [&](const char* data, std::size_t n) {
      text.append(data, n);
      streaming = true;
      return true;
    });
  });
  REQUIRE(eventually([&] { return streaming.load(); }));

  auto ok = c->Post("/v1/runs/g1/approve", R"({"node":"deploy","by":"tester","note":"fine"})",
                    "application/json");
  auto rec = body_json(ok);
  CHECK(ok->status == 200);
  CHECK(rec["recorded"] == "approval");
  CHECK(rec["node_id"] == "deploy");
  CHECK(rec["needs_resume"] == false);

  auto res = run->wait();
  INFO(res);
  CHECK(res.exit_code == 0);
  follower.join();
  auto events = parse_sse(text);
  REQUIRE(!events.empty());
  CHECK(events.back().type == "end");
  CHECK(json::parse(events.back().data)["status"] == "finished");
  std::vector<std::string> types;
  for (std::size_t i = 0; i + 1 < events.size(); ++i) {
    CHECK(events[i].id == std::to_string(i)); // gap-free, in order
    types.push_back(events[i].type);
  }
  auto has = [&](const char* t) { return std::find(types.begin(), types.end(), t) != types.end(); };
  CHECK(has("ApprovalRequested"));
  CHECK(has("ApprovalDecided"));
  CHECK(types.back() == "RunFinished");
  auto decided = sb.inspect("g1");
  CHECK(decided["run"]["status"] == "finished");
}

TEST_CASE("serve: signal, deny and cancel over HTTP") {
  sandbox sb;
  sb.write("signal.json", signal_workflow());
  sb.write("gated.json", gated_workflow());
  REQUIRE(sb.cli({"run", "signal.json", "--run-id", "s1"}).exit_code == 3);
  REQUIRE(sb.cli({"run", "gated.json", "--run-id", "g1"}).exit_code == 3);
  REQUIRE(sb.cli({"run", "gated.json", "--run-id", "g2"}).exit_code == 3);
  serving srv{sb};
  auto c = srv.client();

  // Released runs: the decision is stored and waits for a resume.
  auto sig = c->Post("/v1/runs/s1/signal", R"({"name":"ci-done","data":{"green":true}})",
                     "application/json");
  auto srec = body_json(sig);
  CHECK(sig->status == 200);
  CHECK(srec["needs_resume"] == true);
  CHECK(contains(srec.value("continue_with", std::string{}), "resume s1"));
  auto resumed = sb.cli({"resume", "s1"});
  INFO(resumed);
  CHECK(resumed.exit_code == 0);
  CHECK(sb.inspect("s1")["outputs"]["ci"] == json{{"green", true}});

  auto deny = c->Post("/v1/runs/g1/deny", R"({"node":"deploy"})", "application/json");
  CHECK(deny->status == 200);
  CHECK(body_json(deny)["recorded"] == "denial");
  // Decided once: a second decision is refused, nothing written.
  CHECK(refused(c->Post("/v1/runs/g1/approve", R"({"node":"deploy"})", "application/json"), 400) ==
        "INVALID_ARGUMENT");
  CHECK(refused(c->Post("/v1/runs/g1/approve", R"({"node":"build"})", "application/json"), 400) ==
        "INVALID_ARGUMENT");

  auto cancel = c->Post("/v1/runs/g2/cancel", R"({"reason":"not today"})", "application/json");
  auto crec = body_json(cancel);
  CHECK(cancel->status == 200);
  CHECK(crec["status"] == "cancelled");
  CHECK(crec["cancel_requested"] == false);
  CHECK(sb.inspect("g2")["run"]["status"] == "cancelled");
}

TEST_CASE("serve: on loopback without a token, foreign Host headers and origins are refused") {
  sandbox sb;
  sb.write("gated.json", gated_workflow());
  REQUIRE(sb.cli({"run", "gated.json", "--run-id", "g1"}).exit_code == 3);
  serving srv{sb};
  auto c = srv.client();

  // DNS rebinding: a page on evil.example resolving to 127.0.0.1.
  CHECK(refused(c->Get("/v1/runs", {{"Host", "evil.example:" + std::to_string(srv.port())}}),
                403) == "FORBIDDEN");
  CHECK(refused(c->Get("/", {{"Host", "evil.example:" + std::to_string(srv.port())}}), 403) ==
        "FORBIDDEN");
  // A page elsewhere posting to the server.
  CHECK(refused(c->Post("/v1/runs/g1/approve", {{"Origin", "http://evil.example"}},
                        R"({"node":"deploy"})", "application/json"),
                403) == "FORBIDDEN");
  CHECK(refused(c->Post("/v1/runs/g1/cancel", {{"Sec-Fetch-Site", "cross-site"}}, "",
                        "application/json"),
                403) == "FORBIDDEN");
  CHECK(sb.inspect("g1")["inbox"].empty());
  CHECK(sb.inspect("g1")["run"]["status"] == "waiting-approval");

  // The server's own page may act.
  auto own = c->Post("/v1/runs/g1/approve",
                     {{"Origin", "http://" + srv.host_header()}, {"Sec-Fetch-Site", "same-origin"}},
                     R"({"node":"deploy"})", "application/json");
  REQUIRE(own);
  CHECK(own->status == 200);
}

TEST_CASE("serve: with a token every request but /healthz and the page needs it") {
  sandbox sb;
  sb.write("gated.json", gated_workflow());
  REQUIRE(sb.cli({"run", "gated.json", "--run-id", "g1"}).exit_code == 3);
  serving srv{sb, {"--token", "s3cret-token"}};
  auto c = srv.client();

  auto none = c->Get("/v1/runs");
  CHECK(refused(none, 401) == "UNAUTHORIZED");
  CHECK(none->get_header_value("WWW-Authenticate") == "Bearer");
  CHECK(refused(c->Get("/v1/runs", {{"Authorization", "Bearer wrong"}}), 401) == "UNAUTHORIZED");
  CHECK(refused(c->Get("/metrics"), 401) == "UNAUTHORIZED");
  CHECK(refused(c->Get("/v1/runs/g1/events"), 401) == "UNAUTHORIZED");
  CHECK(refused(c->Post("/v1/runs/g1/approve", R"({"node":"deploy"})", "application/json"), 401) ==
        "UNAUTHORIZED");
  CHECK(sb.inspect("g1")["inbox"].empty());

  auto health = c->Get("/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
  auto page = c->Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->get_header_value("Content-Type").find("text/html") == 0);

  httplib::Headers auth{{"Authorization", "Bearer s3cret-token"}};
  auto runs = c->Get("/v1/runs", auth);
  REQUIRE(runs);
  CHECK(runs->status == 200);
  auto ok = c->Post("/v1/runs/g1/approve", auth, R"({"node":"deploy"})", "application/json");
  REQUIRE(ok);
  CHECK(ok->status == 200);
  // A token does not let another origin act.
  httplib::Headers cross{{"Authorization", "Bearer s3cret-token"},
                         {"Origin", "http://evil.example"}};
  CHECK(refused(c->Post("/v1/runs/g1/cancel", cross, "", "application/json"), 403) == "FORBIDDEN");
}

TEST_CASE("serve: off loopback it needs a token, and bad options are refused with exit 4") {
  sandbox sb;
  auto open = sb.cli({"serve", "--listen", "0.0.0.0:0"});
  CHECK(open.exit_code == 4);
  CHECK(contains(open.err, "INVALID_ARGUMENT"));
  CHECK(contains(open.err, "needs --token"));
  for (auto bad : std::vector<std::vector<std::string>>{
           {"serve", "--listen", "nohost"},
           {"serve", "--listen", "127.0.0.1:99999"},
           {"serve", "--token", ""},
           {"serve", "--token", "has space"},
       }) {
    auto r = sb.cli(bad);
    INFO(r);
    CHECK(r.exit_code == 4);
    CHECK(contains(r.err, "INVALID_ARGUMENT"));
  }
  CHECK(!sb.db_exists());

  serving srv{sb, {"--token", "tok"}, "0.0.0.0"};
  // A port another server holds is refused (no SO_REUSEPORT sharing).
  auto taken = sb.cli({"serve", "--listen", "127.0.0.1:" + std::to_string(srv.port())});
  INFO(taken);
  CHECK(taken.exit_code == 4);
  CHECK(contains(taken.err, "cannot listen"));
  auto c = srv.client();
  auto r = c->Get("/v1/runs", {{"Authorization", "Bearer tok"}});
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(body_json(r)["runs"].empty()); // no database yet: no runs, none created
  CHECK(!sb.db_exists());
  auto stopped = srv.stop();
  CHECK(stopped.exit_code == 0);
}

TEST_CASE("serve: the page is served from the binary and fetches nothing from elsewhere") {
  sandbox sb;
  serving srv{sb};
  auto c = srv.client();
  auto page = c->Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(contains(page->body, "<html"));
  CHECK(contains(page->get_header_value("Content-Security-Policy"), "default-src 'none'"));
  CHECK(contains(page->get_header_value("Content-Security-Policy"), "connect-src 'self'"));
  for (const char* outside : {"http://", "https://", "//cdn", "src=\"//"}) {
    INFO(outside);
    CHECK(!contains(page->body, outside));
  }
}

TEST_CASE("serve: the runs list stream sends the newest runs, then each change") {
  sandbox sb;
  sb.write("hello.json", hello_workflow());
  sb.write("gated.json", gated_workflow());
  REQUIRE(sb.cli({"run", "hello.json", "--run-id", "old"}).exit_code == 0);
  serving srv{sb};

  // Read the stream until `done` says enough (it never ends by itself).
  std::string text;
  std::mutex mtx;
  std::atomic<bool> stop{false};
  auto c = srv.client();
  std::thread reader([&] {
    c->Get("/v1/events", [&](const char* data, std::size_t n) {
      std::lock_guard<std::mutex> lk(mtx);
      text.append(data, n);
      return !stop.load();
    });
  });
  auto seen = [&](const std::string& run, const std::string& status) {
    std::lock_guard<std::mutex> lk(mtx);
    for (const auto& m : parse_sse(text))
      if (m.type == "run") {
        auto j = json::parse(m.data);
        if (j["run_id"] == run && j["status"] == status) return true;
      }
    return false;
  };
  auto ready = [&] {
    std::lock_guard<std::mutex> lk(mtx);
    return contains(text, "event: ready");
  };
  CHECK(eventually(ready));
  CHECK(seen("old", "finished"));

  // A run started after the stream opened: its changes come as they happen.
  REQUIRE(sb.cli({"run", "gated.json", "--run-id", "new"}).exit_code == 3);
  CHECK(eventually([&] { return seen("new", "waiting-approval"); }));
  REQUIRE(sb.cli({"cancel", "new"}).exit_code == 0);
  CHECK(eventually([&] { return seen("new", "cancelled"); }));
  stop = true;
  c->stop(); // ends the read now, not at the next keep-alive
  reader.join();
  std::lock_guard<std::mutex> lk(mtx);
  auto messages = parse_sse(text);
  // Each change once: "old" was sent with the first list and not again.
  CHECK(std::count_if(messages.begin(), messages.end(), [](const sse_message& m) {
          return m.type == "run" && json::parse(m.data)["run_id"] == "old";
        }) == 1);
}

TEST_CASE("serve: /metrics is Prometheus text with the database's figures") {
  sandbox sb;
  sb.write("hello.json", hello_workflow());
  sb.write("gated.json", gated_workflow());
  for (const char* id : {"r1", "r2"})
    REQUIRE(sb.cli({"run", "hello.json", "--run-id", id}).exit_code == 0);
  REQUIRE(sb.cli({"run", "gated.json", "--run-id", "g1"}).exit_code == 3);
  serving srv{sb};
  auto c = srv.client();
  auto r = c->Get("/metrics");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Content-Type").find("text/plain; version=0.0.4") == 0);
  INFO(r->body);
  auto x = test_support::parse_exposition(r->body); // throws on any malformed line
  CHECK(x.at(R"(smithers_db_runs{workflow="hello",status="finished"})") == 2);
  CHECK(x.at(R"(smithers_db_runs{workflow="gated",status="waiting-approval"})") == 1);
  CHECK(x.at(R"(smithers_db_attempts{state="finished"})") == 3); // greet twice, build
  CHECK(x.at("smithers_db_tasks_in_flight") == 0);
  // serve drives no runs: it shows no series of its own (all would be zero).
  CHECK(!x.types.count("smithers_tasks_started_total"));
  CHECK(x.types.at("smithers_db_attempt_duration_seconds") == "histogram");
}
