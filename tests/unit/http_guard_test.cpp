// smithers serve's rules (http/guard.hpp), table-driven: the token, the
// Host header on loopback, the origin of mutating requests, status codes
// and Server-Sent Event framing.
#include "http/guard.hpp"

#include <smithers/errors.hpp>

#include <catch2/catch.hpp>

using namespace smithers;
using namespace smithers::http;

TEST_CASE("bearer tokens match exactly", "[http]") {
  struct row {
    const char* header;
    const char* token;
    bool ok;
  };
  const row rows[] = {
      {"Bearer s3cret", "s3cret", true},
      {"bearer s3cret", "s3cret", true}, // the scheme is case-insensitive
      {"Bearer s3cret ", "s3cret", false},
      {"Bearer s3cre", "s3cret", false},
      {"Bearer s3cretX", "s3cret", false},
      {"Bearer S3CRET", "s3cret", false},
      {"Basic s3cret", "s3cret", false},
      {"s3cret", "s3cret", false},
      {"", "s3cret", false},
      {"Bearer ", "", false}, // no token set never matches
      {"Bearer", "s3cret", false},
  };
  for (const auto& r : rows) {
    INFO(r.header << " / " << r.token);
    CHECK(bearer_matches(r.header, r.token) == r.ok);
  }
}

TEST_CASE("a Host header names the loopback server or is refused", "[http]") {
  struct row {
    const char* host;
    std::uint16_t port;
    bool ok;
  };
  const row rows[] = {
      {"127.0.0.1:7331", 7331, true},
      {"localhost:7331", 7331, true},
      {"LOCALHOST:7331", 7331, true},
      {"127.1.2.3:7331", 7331, true},
      {"[::1]:7331", 7331, true},
      {"localhost", 80, true},
      {"localhost", 7331, false}, // no port means 80
      {"127.0.0.1:7332", 7331, false},
      {"evil.example:7331", 7331, false}, // DNS rebinding
      {"127.0.0.1.evil.example:7331", 7331, false},
      {"10.0.0.1:7331", 7331, false},
      {"[::1]", 7331, false},
      {"[::2]:7331", 7331, false},
      {"", 7331, false},
      {"127.0.0.1:", 7331, false},
      {"127.0.0.1:07331x", 7331, false},
      {"127.0.0.1:999999", 7331, false},
  };
  for (const auto& r : rows) {
    INFO(r.host << " port " << r.port);
    CHECK(loopback_host_header(r.host, r.port) == r.ok);
  }
}

TEST_CASE("a mutating request must come from the server's own origin", "[http]") {
  struct row {
    const char* origin;
    const char* site;
    const char* host;
    bool ok;
  };
  const row rows[] = {
      {"", "", "127.0.0.1:7331", true}, // curl, the CLI: neither header
      {"http://127.0.0.1:7331", "", "127.0.0.1:7331", true},
      {"http://127.0.0.1:7331", "same-origin", "127.0.0.1:7331", true},
      {"HTTP://LOCALHOST:7331", "", "localhost:7331", true},
      {"", "none", "127.0.0.1:7331", true}, // typed in the address bar
      {"http://localhost:7331", "", "127.0.0.1:7331", false},
      {"http://evil.example", "cross-site", "127.0.0.1:7331", false},
      {"", "cross-site", "127.0.0.1:7331", false},
      {"", "same-site", "127.0.0.1:7331", false},
      {"null", "", "127.0.0.1:7331", false},
      {"https://runs.example.com", "", "runs.example.com", true}, // behind a TLS proxy
      {"https://evil.example", "", "runs.example.com", false},
      {"ftp://127.0.0.1:7331", "", "127.0.0.1:7331", false},
      {"http://127.0.0.1:7331", "", "", false},
      {"http://127.0.0.1:73311", "", "127.0.0.1:7331", false},
  };
  for (const auto& r : rows) {
    INFO(r.origin << " / " << r.site << " / " << r.host);
    CHECK(same_origin(r.origin, r.site, r.host) == r.ok);
  }
}

TEST_CASE("check_request applies the token, the Host and the origin rules", "[http]") {
  serve_policy open{"", true, 7331};
  serve_policy locked{"tok", false, 7331};
  struct row {
    const char* what;
    request_facts req;
    const serve_policy* policy;
    int status;
    const char* code;
  };
  const row rows[] = {
      {"a read on loopback", {"GET", "/v1/runs", "127.0.0.1:7331", "", "", ""}, &open, 0, ""},
      {"a read from a rebinding page",
       {"GET", "/v1/runs", "evil.example:7331", "", "", ""},
       &open,
       403,
       errc::forbidden},
      {"the page from a rebinding page",
       {"GET", "/", "evil.example:7331", "", "", ""},
       &open,
       403,
       errc::forbidden},
      {"a POST from the page",
       {"POST", "/v1/runs/r/cancel", "127.0.0.1:7331", "http://127.0.0.1:7331", "same-origin", ""},
       &open,
       0,
       ""},
      {"a POST from another site",
       {"POST", "/v1/runs/r/cancel", "127.0.0.1:7331", "http://evil.example", "cross-site", ""},
       &open,
       403,
       errc::forbidden},
      {"no token", {"GET", "/v1/runs", "host:1", "", "", ""}, &locked, 401, errc::unauthorized},
      {"a wrong token",
       {"GET", "/v1/runs", "host:1", "", "", "Bearer nope"},
       &locked,
       401,
       errc::unauthorized},
      {"the token", {"GET", "/v1/runs", "host:1", "", "", "Bearer tok"}, &locked, 0, ""},
      {"healthz without a token", {"GET", "/healthz", "host:1", "", "", ""}, &locked, 0, ""},
      {"the page without a token", {"GET", "/", "host:1", "", "", ""}, &locked, 0, ""},
      {"metrics without a token",
       {"GET", "/metrics", "host:1", "", "", ""},
       &locked,
       401,
       errc::unauthorized},
      {"a POST with the token from another origin",
       {"POST", "/v1/runs/r/approve", "host:1", "http://evil.example", "", "Bearer tok"},
       &locked,
       403,
       errc::forbidden},
      {"a POST with the token from a tool",
       {"POST", "/v1/runs/r/approve", "host:1", "", "", "Bearer tok"},
       &locked,
       0,
       ""},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    auto v = check_request(r.req, *r.policy);
    CHECK(v.status == r.status);
    CHECK(v.code == r.code);
    CHECK(static_cast<bool>(v) == (r.status != 0));
  }
}

TEST_CASE("error codes map to HTTP statuses", "[http]") {
  CHECK(status_for(errc::invalid_argument) == 400);
  CHECK(status_for(errc::invalid_input) == 400);
  CHECK(status_for(errc::unauthorized) == 401);
  CHECK(status_for(errc::forbidden) == 403);
  CHECK(status_for(errc::run_not_found) == 404);
  CHECK(status_for(errc::not_found) == 404);
  CHECK(status_for(errc::method_not_allowed) == 405);
  CHECK(status_for(errc::run_owner_alive) == 409);
  CHECK(status_for(errc::server_busy) == 503);
  CHECK(status_for(errc::db_error) == 500);
  CHECK(status_for(errc::internal) == 500);
  CHECK(status_for("SOMETHING_ELSE") == 500);
}

TEST_CASE("server-sent events are framed and cannot be split by their content", "[http]") {
  CHECK(sse_event("3", "NodeStarted", R"({"a":1})") ==
        "id: 3\nevent: NodeStarted\ndata: {\"a\":1}\n\n");
  CHECK(sse_event("", "end", "{}") == "event: end\ndata: {}\n\n");
  // A line break would start a new field (or end the event): never passed.
  CHECK(sse_event("1\n", "x\r\nevent: evil", "a\nb") ==
        "id: 1 \nevent: x  event: evil\ndata: a b\n\n");
}
