#include "serve/server.hpp"

#include "cli.hpp"

#include "http/guard.hpp"
#include "util/json_parse.hpp"

#include <smithers/admin.hpp>
#include <smithers/engine.hpp>
#include <smithers/limits.hpp>
#include <smithers/metrics.hpp>
#include <smithers/status.hpp>

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <sys/socket.h>

namespace smithers::embedded {
std::string_view dashboard_page(); // dashboard_page.cpp, made from serve/dashboard.html
}

namespace smithers::serve {

namespace {

using namespace std::chrono_literals;

// How often a stream looks for what is new (one cheap PRAGMA when nothing
// is), and how long it stays silent before a keep-alive comment, which is
// also how it notices a client that has gone (and frees its slot).
constexpr auto stream_poll = 200ms;
constexpr auto stream_keepalive = 5s;
// Each open stream holds one of the server's threads: at most this many
// streams, so requests always find a thread.
constexpr int max_streams = 48;
constexpr int server_threads = max_streams + 16;
// A POST body: a signal's payload is bounded like run input, plus room for
// the object around it.
constexpr std::size_t max_body_bytes = limits::max_input_bytes + 64 * 1024;
// Events sent per read, and runs a list stream starts with.
constexpr std::size_t events_per_read = 500;
constexpr std::size_t list_stream_first = 100;

std::string dumped(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dumped(body), "application/json");
}

void send_error(httplib::Response& res, const error& e, int status = 0) {
  send_json(res, status ? status : http::status_for(e.code), e.to_json());
}

bool ended(const std::string& status) {
  return status == "finished" || status == "failed" || status == "cancelled" ||
         status == "continued";
}

std::string header(const httplib::Request& req, const char* name) {
  return req.get_header_value(name);
}

// A decimal integer in [min, max]; INVALID_ARGUMENT naming where it came from.
std::int64_t int_value(const std::string& text, const char* name, std::int64_t min,
                       std::int64_t max) {
  std::int64_t n = 0;
  bool ok = !text.empty() && text.size() <= 18;
  for (char c : text) {
    if (c < '0' || c > '9') ok = false;
    if (ok) n = n * 10 + (c - '0');
  }
  if (!ok || n < min || n > max)
    throw smithers_error(errc::invalid_argument, std::string{name} + " must be an integer from " +
                                                     std::to_string(min) + " to " +
                                                     std::to_string(max));
  return n;
}

// A query parameter as an integer in [min, max].
std::int64_t query_int(const httplib::Request& req, const char* name, std::int64_t fallback,
                       std::int64_t min, std::int64_t max) {
  return req.has_param(name) ? int_value(req.get_param_value(name), name, min, max) : fallback;
}

// A POST body: a JSON object (empty body = {}), bounded like run input,
// holding only `allowed` keys.
json body_object(const httplib::Request& req, std::initializer_list<const char*> allowed) {
  if (req.body.empty()) return json::object();
  util::json_parse_error err;
  auto j = util::parse_json(req.body, {limits::max_input_depth + 1, max_body_bytes}, &err);
  if (!j) throw smithers_error(util::to_error(err, errc::invalid_input, "request body"));
  if (!j->is_object())
    throw smithers_error(errc::invalid_input, "the request body must be a JSON object");
  for (const auto& [key, value] : j->items()) {
    bool known = false;
    for (const char* a : allowed)
      known = known || key == a;
    if (!known)
      throw smithers_error(errc::invalid_argument,
                           "unknown field \"" + key + "\" in the request body");
  }
  return std::move(*j);
}

std::string string_field(const json& body, const char* key, bool required) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) {
    if (required)
      throw smithers_error(errc::invalid_argument,
                           std::string{"the request body needs \""} + key + "\"");
    return "";
  }
  if (!it->is_string())
    throw smithers_error(errc::invalid_argument, std::string{"\""} + key + "\" must be a string");
  return it->get<std::string>();
}

} // namespace

struct server::impl {
  server_options opts;
  http::serve_policy policy;
  httplib::Server http;
  std::atomic<bool> stopping{false};
  std::atomic<int> streams{0};
  // serve drives no runs: its metrics are the database's, read on one
  // connection kept for scrapes so the figures' cache holds across them.
  metrics db_metrics;
  std::mutex metrics_mtx;
  std::optional<run_store> metrics_store;

  explicit impl(server_options o) : opts(std::move(o)) {
    policy.token = opts.token;
    policy.loopback = is_loopback_host(opts.listen.host);
  }

  // The database, or nullopt when there is none yet (no runs).
  std::optional<run_store> store() const { return run_store::open_existing(opts.db_path); }
  run_store store_for(const std::string& run_id) const {
    return run_store::open_for(opts.db_path, run_id);
  }

  // Runs a handler; a smithers_error becomes its JSON error and status,
  // anything else INTERNAL (a bug), never a dropped connection.
  template <class F> httplib::Server::Handler guarded(F f) {
    return [f](const httplib::Request& req, httplib::Response& res) {
      try {
        f(req, res);
      } catch (const smithers_error& e) {
        send_error(res, e.err());
      } catch (const std::exception& e) {
        send_error(res, error{errc::internal, std::string{"unexpected error: "} + e.what()});
      }
    };
  }

  // An action refused with INVALID_ARGUMENT on a run that has ended is a
  // conflict with its state (409), with the code the CLI gives.
  template <class F> void act(const std::string& run_id, httplib::Response& res, F f) {
    try {
      f();
    } catch (const smithers_error& e) {
      if (e.code() == errc::invalid_argument)
        if (auto s = store())
          if (auto r = s->find(run_id); r && ended(r->status)) {
            send_error(res, e.err(), 409);
            return;
          }
      throw;
    }
  }

  // What continues a run nobody drives, as the CLI says it.
  std::string resume_command(const std::string& run_id) const {
    return opts.command + " resume " + cli::shell_word(run_id);
  }

  void routes();
  void run_events(const httplib::Request& req, httplib::Response& res);
  void list_events(const httplib::Request& req, httplib::Response& res);
  bool take_stream(httplib::Response& res);
};

bool server::impl::take_stream(httplib::Response& res) {
  if (streams.fetch_add(1) >= max_streams) {
    streams.fetch_sub(1);
    send_error(res,
               error{errc::server_busy, "too many open event streams (" +
                                            std::to_string(max_streams) + "); try again later"},
               503);
    return false;
  }
  return true;
}

// GET /v1/runs/{id}/events: the stored events after Last-Event-ID (or
// ?after), then new ones as they are committed, until the run has ended and
// all were sent ("end").
void server::impl::run_events(const httplib::Request& req, httplib::Response& res) {
  std::string run_id = req.matches[1];
  auto s = store_for(run_id);
  s.get(run_id); // RUN_NOT_FOUND before the stream starts
  std::int64_t after = -1;
  if (auto last = header(req, "Last-Event-ID"); !last.empty()) {
    after = int_value(last, "Last-Event-ID", 0, 0xFFFFFFFFLL);
  } else {
    after = query_int(req, "after", -1, -1, 0xFFFFFFFFLL);
  }
  if (!take_stream(res)) return;
  struct state {
    run_store store;
    std::int64_t after;
    std::int64_t version = -1;
    std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();
  };
  auto st = std::make_shared<state>(state{std::move(s), after});
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, st, run_id](std::size_t, httplib::DataSink& sink) {
        if (stopping) return false;
        auto now = std::chrono::steady_clock::now();
        auto version = st->store.data_version();
        if (version != st->version) {
          st->version = version;
          // Read the status first: events committed with the run's end are
          // then read below, and "end" follows the last of them.
          auto run = st->store.find(run_id);
          bool over = !run || ended(run->status);
          bool wrote = false;
          for (;;) {
            auto batch = st->store.events(run_id, st->after, events_per_read);
            for (const auto& ev : batch) {
              st->after = ev.value("seq", st->after + 1);
              auto text = http::sse_event(std::to_string(st->after),
                                          ev.value("type", std::string{"event"}), dumped(ev));
              if (!sink.write(text.data(), text.size())) return false;
              wrote = true;
            }
            if (batch.size() < events_per_read) break;
          }
          if (wrote) st->last_write = now;
          if (over) {
            auto text = http::sse_event(
                "", "end", dumped(json{{"status", run ? run->status : std::string{"gone"}}}));
            sink.write(text.data(), text.size());
            sink.done();
            return true;
          }
          if (wrote) return true;
        }
        if (now - st->last_write >= stream_keepalive) {
          static constexpr char ping[] = ": keepalive\n\n";
          if (!sink.write(ping, sizeof ping - 1)) return false;
          st->last_write = now;
        }
        std::this_thread::sleep_for(stream_poll);
        return true;
      },
      [this](bool) { streams.fetch_sub(1); });
}

// GET /v1/events: the runs list's stream: the newest runs, then every run
// whose row changes (status, its owner's heartbeat).
void server::impl::list_events(const httplib::Request&, httplib::Response& res) {
  if (!take_stream(res)) return;
  struct state {
    std::optional<run_store> store; // opened once the database exists
    std::int64_t version = -1;
    std::int64_t since_ms = 0;
    std::map<std::string, std::int64_t> sent; // run -> updated_ms sent, at since_ms
    bool first = true;
    std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();
  };
  auto st = std::make_shared<state>();
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, st](std::size_t, httplib::DataSink& sink) {
        if (stopping) return false;
        auto now = std::chrono::steady_clock::now();
        if (!st->store) st->store = store();
        bool wrote = false;
        auto send = [&](const run_info& r) {
          auto text = http::sse_event(std::to_string(r.updated_ms), "run", dumped(r.to_json()));
          wrote = true;
          return sink.write(text.data(), text.size());
        };
        if (st->store) {
          auto& s = *st->store;
          auto version = s.data_version();
          if (st->first) {
            st->version = version;
            auto newest = s.runs(run_query{"", "", list_stream_first, 0});
            std::reverse(newest.begin(), newest.end());
            for (const auto& r : newest) {
              if (!send(r)) return false;
              st->since_ms = std::max(st->since_ms, r.updated_ms);
            }
            for (const auto& r : newest)
              if (r.updated_ms == st->since_ms) st->sent[r.run_id] = r.updated_ms;
          } else if (version != st->version) {
            st->version = version;
            // Oldest change first; a page at a time while the watermark moves.
            constexpr std::size_t page = 1000;
            for (;;) {
              auto before = st->since_ms;
              auto changed = s.runs_updated_since(st->since_ms, page);
              for (const auto& r : changed) {
                // Rows changed in the millisecond of the last one sent come
                // again with >=: each change is sent once.
                auto it = st->sent.find(r.run_id);
                if (it != st->sent.end() && it->second == r.updated_ms) continue;
                if (!send(r)) return false;
                if (r.updated_ms > st->since_ms) {
                  st->since_ms = r.updated_ms;
                  st->sent.clear();
                }
                st->sent[r.run_id] = r.updated_ms;
              }
              if (changed.size() < page || st->since_ms == before) break;
            }
          }
        }
        if (st->first) {
          st->first = false;
          // Says the initial list is complete (possibly empty).
          auto text = http::sse_event("", "ready", "{}");
          if (!sink.write(text.data(), text.size())) return false;
          wrote = true;
        }
        if (wrote) {
          st->last_write = now;
          return true;
        }
        if (now - st->last_write >= stream_keepalive) {
          static constexpr char ping[] = ": keepalive\n\n";
          if (!sink.write(ping, sizeof ping - 1)) return false;
          st->last_write = now;
        }
        std::this_thread::sleep_for(stream_poll);
        return true;
      },
      [this](bool) { streams.fetch_sub(1); });
}

void server::impl::routes() {
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    auto host = header(req, "Host");
    auto origin = header(req, "Origin");
    auto site = header(req, "Sec-Fetch-Site");
    auto auth = header(req, "Authorization");
    http::request_facts facts{req.method, req.path, host, origin, site, auth};
    if (auto v = http::check_request(facts, policy)) {
      if (v.status == 401) res.set_header("WWW-Authenticate", "Bearer");
      send_error(res, error{v.code, v.message}, v.status);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // What httplib answers itself (no route, a body too large, a request it
  // cannot read) gets the JSON error shape too.
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    switch (res.status) {
    case 404:
      send_error(res, error{errc::not_found, "no such endpoint: " + req.method + " " + req.path});
      break;
    case 413:
      send_error(res,
                 error{errc::invalid_input, "the request body is larger than " +
                                                std::to_string(max_body_bytes) + " bytes"},
                 413);
      break;
    default:
      send_error(res, error{errc::invalid_argument, "bad request"}, res.status);
    }
  });

  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    auto page = embedded::dashboard_page();
    res.set_header("Cache-Control", "no-store");
    // The page runs only its own inline code and talks only to this server.
    res.set_header("Content-Security-Policy",
                   "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                   "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                   "form-action 'none'; frame-ancestors 'none'");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_content(std::string{page}, "text/html; charset=utf-8");
  });
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"status", "ok"}});
  });
  http.Get("/metrics", guarded([this](const httplib::Request&, httplib::Response& res) {
             std::lock_guard<std::mutex> lk(metrics_mtx);
             if (!metrics_store) metrics_store = store();
             res.set_content(metrics_store ? db_metrics.database_text(*metrics_store) : "",
                             "text/plain; version=0.0.4; charset=utf-8");
           }));
  http.Get("/v1/runs", guarded([this](const httplib::Request& req, httplib::Response& res) {
             run_query q;
             q.status = req.get_param_value("status");
             q.workflow = req.get_param_value("workflow");
             if (!q.status.empty() && q.status != "created" && !run_status_from(q.status))
               throw smithers_error(errc::invalid_argument, "unknown status \"" + q.status + "\"");
             q.limit = static_cast<std::size_t>(query_int(req, "limit", 100, 1, 1000));
             q.offset = static_cast<std::size_t>(query_int(req, "offset", 0, 0, 1'000'000'000LL));
             json runs = json::array();
             std::size_t total = 0;
             if (auto s = store()) {
               for (const auto& r : s->runs(q))
                 runs.push_back(r.to_json());
               total = s->run_count(q);
             }
             send_json(
                 res, 200,
                 {{"runs", runs}, {"total", total}, {"limit", q.limit}, {"offset", q.offset}});
           }));
  http.Get(R"(/v1/runs/([^/]+))",
           guarded([this](const httplib::Request& req, httplib::Response& res) {
             std::string id = req.matches[1];
             send_json(res, 200, store_for(id).inspect(id));
           }));
  http.Get(R"(/v1/runs/([^/]+)/tree)",
           guarded([this](const httplib::Request& req, httplib::Response& res) {
             std::string id = req.matches[1];
             send_json(res, 200, store_for(id).latest_tree(id));
           }));
  http.Get(R"(/v1/runs/([^/]+)/events)",
           guarded([this](const httplib::Request& req, httplib::Response& res) {
             run_events(req, res);
           }));
  http.Get("/v1/events", guarded([this](const httplib::Request& req, httplib::Response& res) {
             list_events(req, res);
           }));

  http.Post(R"(/v1/runs/([^/]+)/cancel)",
            guarded([this](const httplib::Request& req, httplib::Response& res) {
              std::string id = req.matches[1];
              auto body = body_object(req, {"reason"});
              std::string reason = string_field(body, "reason", false);
              if (reason.size() > limits::max_note_bytes)
                throw smithers_error(errc::invalid_argument, "\"reason\" is over 64 KiB");
              if (reason.empty()) reason = "cancelled over HTTP";
              auto s = store_for(id);
              cancel_report rep;
              act(id, res, [&] { rep = s.cancel(id, reason, default_stale_after); });
              if (res.status >= 400) return;
              auto now = s.find(id);
              send_json(res, 200,
                        {{"run_id", id},
                         {"status", now ? now->status : std::string{}},
                         {"cancel_requested", rep.requested},
                         {"attempts_cancelled", rep.attempts},
                         {"nodes_cancelled", rep.nodes}});
            }));
  for (bool approve : {true, false}) {
    http.Post(approve ? R"(/v1/runs/([^/]+)/approve)" : R"(/v1/runs/([^/]+)/deny)",
              guarded([this, approve](const httplib::Request& req, httplib::Response& res) {
                std::string id = req.matches[1];
                auto body = body_object(req, {"node", "iteration", "by", "note"});
                std::string node = string_field(body, "node", true);
                std::optional<std::int64_t> iteration;
                if (auto it = body.find("iteration"); it != body.end() && !it->is_null()) {
                  if (!it->is_number_integer() || it->get<std::int64_t>() < 0 ||
                      it->get<std::int64_t>() > limits::max_loop_iterations)
                    throw smithers_error(errc::invalid_argument,
                                         "\"iteration\" must be an integer from 0 to " +
                                             std::to_string(limits::max_loop_iterations));
                  iteration = it->get<std::int64_t>();
                }
                auto by = string_field(body, "by", false);
                auto note = string_field(body, "note", false);
                auto s = store_for(id);
                inbox_report rep;
                act(id, res, [&] { rep = s.decide(id, node, iteration, approve, by, note); });
                if (res.status >= 400) return;
                json out = {{"run_id", id},
                            {"recorded", approve ? "approval" : "denial"},
                            {"inbox_id", rep.id},
                            {"run_status", rep.run.status},
                            {"needs_resume", rep.needs_resume},
                            {"node_id", rep.node_id},
                            {"iteration", rep.iteration}};
                if (rep.needs_resume) out["continue_with"] = resume_command(id);
                send_json(res, 200, out);
              }));
  }
  http.Post(R"(/v1/runs/([^/]+)/signal)",
            guarded([this](const httplib::Request& req, httplib::Response& res) {
              std::string id = req.matches[1];
              auto body = body_object(req, {"name", "data"});
              std::string name = string_field(body, "name", true);
              json data = body.contains("data") ? body["data"] : json::object();
              auto s = store_for(id);
              inbox_report rep;
              act(id, res, [&] { rep = s.signal(id, name, data); });
              if (res.status >= 400) return;
              json out = {{"run_id", id},
                          {"recorded", "signal \"" + name + "\""},
                          {"inbox_id", rep.id},
                          {"run_status", rep.run.status},
                          {"needs_resume", rep.needs_resume}};
              if (rep.needs_resume) out["continue_with"] = resume_command(id);
              send_json(res, 200, out);
            }));

  // A known path with the wrong method: 405 with what it takes.
  auto wrong_method = [](const char* allow) {
    return [allow](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Allow", allow);
      send_error(res, error{errc::method_not_allowed,
                            req.method + " " + req.path + " is not served; use " + allow});
    };
  };
  const char* action = R"(/v1/runs/([^/]+)/(cancel|approve|deny|signal))";
  http.Get(action, wrong_method("POST"));
  http.Put(action, wrong_method("POST"));
  http.Delete(action, wrong_method("POST"));
  http.Patch(action, wrong_method("POST"));
  http.Options(action, wrong_method("POST"));
  for (const char* p : {"/v1/runs", R"(/v1/runs/([^/]+))", R"(/v1/runs/([^/]+)/(events|tree))",
                        "/v1/events", "/metrics", "/healthz", "/"}) {
    http.Post(p, wrong_method("GET"));
    http.Put(p, wrong_method("GET"));
    http.Delete(p, wrong_method("GET"));
    http.Patch(p, wrong_method("GET"));
    http.Options(p, wrong_method("GET"));
  }
}

server::server(server_options opts) : impl_(std::make_unique<impl>(std::move(opts))) {
  auto& h = impl_->http;
  h.new_task_queue = [] { return new httplib::ThreadPool(server_threads); };
  h.set_payload_max_length(max_body_bytes);
  // httplib's default adds SO_REUSEPORT, which lets a second server bind the
  // same port and split the connections: only SO_REUSEADDR (a restart may
  // reuse a port in TIME_WAIT).
  h.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  h.set_read_timeout(10, 0);
  h.set_write_timeout(10, 0);
  h.set_keep_alive_timeout(5);
  impl_->routes();
}

server::~server() {
  stop();
}

std::uint16_t server::bind() {
  const auto& l = impl_->opts.listen;
  int port = l.port == 0 ? impl_->http.bind_to_any_port(l.host)
                         : (impl_->http.bind_to_port(l.host, l.port) ? l.port : -1);
  if (port <= 0)
    throw smithers_error(errc::invalid_argument, "--listen " + l.to_string() +
                                                     ": cannot listen there (in use, or not "
                                                     "an address of this host)");
  impl_->policy.port = static_cast<std::uint16_t>(port);
  return impl_->policy.port;
}

void server::run() {
  impl_->http.listen_after_bind();
}

void server::stop() {
  impl_->stopping = true;
  impl_->http.stop();
}

} // namespace smithers::serve
