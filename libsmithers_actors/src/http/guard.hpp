// The HTTP server's rules (docs/operations.md, "Serving"), as pure functions
// of a request's headers: who may read, who may act, and how an error code
// becomes an HTTP status. No socket or HTTP library type appears here, so
// the rules are tested table-driven.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace smithers::http {

/// What a request's headers say, as far as the rules care.
struct request_facts {
  std::string_view method;        // "GET", "POST", ...
  std::string_view path;          // "/v1/runs"
  std::string_view host;          // the Host header ("" when absent)
  std::string_view origin;        // the Origin header ("" when absent)
  std::string_view fetch_site;    // the Sec-Fetch-Site header ("" when absent)
  std::string_view authorization; // the Authorization header ("" when absent)
};

/// How the server listens.
struct serve_policy {
  std::string token;      // "" for none
  bool loopback = true;   // bound to a loopback address
  std::uint16_t port = 0; // the bound port
};

/// A refusal: HTTP status, error code and message; status 0 lets it pass.
struct verdict {
  int status = 0;
  std::string code;
  std::string message;
  explicit operator bool() const { return status != 0; }
};

/// Whether the request may go on: the token when one is set (every path
/// but /healthz and the page itself, which holds no data), the Host header
/// when serving loopback without a token (so a DNS-rebinding page cannot
/// read or act through the server), and the origin of a mutating request.
verdict check_request(const request_facts& req, const serve_policy& policy);

/// Whether `authorization` is "Bearer TOKEN" for this token; compared in
/// constant time.
bool bearer_matches(std::string_view authorization, std::string_view token);

/// Whether a Host header names this server on loopback: 127.0.0.0/8,
/// [::1] or localhost, at `port`.
bool loopback_host_header(std::string_view host, std::uint16_t port);

/// Whether a mutating request comes from the server's own page: an Origin,
/// when sent, must be "http://" or "https://" (a TLS proxy) + Host; a Sec-Fetch-Site, when sent,
/// must be same-origin or none. Requests from tools (curl, the CLI) send neither.
bool same_origin(std::string_view origin, std::string_view fetch_site, std::string_view host);

/// The HTTP status for a smithers error code (docs/reference.md#error-codes).
int status_for(std::string_view code);

/// One Server-Sent Event: "id: ID\nevent: TYPE\ndata: DATA\n\n". Line breaks
/// in any field would end it early: they are replaced by spaces (JSON text
/// has none outside strings, where they are escaped).
std::string sse_event(std::string_view id, std::string_view type, std::string_view data);

} // namespace smithers::http
