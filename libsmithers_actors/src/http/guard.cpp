#include "http/guard.hpp"

#include <smithers/errors.hpp>
#include <smithers/remote.hpp>

#include <algorithm>
#include <cctype>

namespace smithers::http {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool mutating(std::string_view method) {
  return method != "GET" && method != "HEAD" && method != "OPTIONS";
}

// Paths anyone may reach: the liveness probe, and the page, which holds no
// data (it asks for the token and sends it with every call).
bool public_path(std::string_view path) {
  return path == "/healthz" || path == "/";
}

} // namespace

bool bearer_matches(std::string_view authorization, std::string_view token) {
  constexpr std::string_view scheme = "Bearer ";
  if (token.empty() || authorization.size() < scheme.size() ||
      !iequals(authorization.substr(0, scheme.size()), scheme))
    return false;
  auto given = authorization.substr(scheme.size());
  // Constant time in the token's content: every byte is compared whatever
  // the first difference (the length is not secret).
  unsigned char diff = given.size() == token.size() ? 0 : 1;
  for (std::size_t i = 0; i < token.size(); ++i)
    diff |= static_cast<unsigned char>(token[i]) ^
            static_cast<unsigned char>(i < given.size() ? given[i] : 0);
  return diff == 0;
}

bool loopback_host_header(std::string_view host, std::uint16_t port) {
  std::string_view name, port_text;
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    if (close == std::string_view::npos) return false;
    name = host.substr(1, close - 1);
    auto rest = host.substr(close + 1);
    if (rest.size() < 2 || rest.front() != ':') return false;
    port_text = rest.substr(1);
  } else {
    auto colon = host.rfind(':');
    // A browser leaves the port out only for 80: then the port must be 80.
    name = colon == std::string_view::npos ? host : host.substr(0, colon);
    port_text = colon == std::string_view::npos ? "80" : host.substr(colon + 1);
  }
  if (port_text.empty() || port_text.size() > 5) return false;
  unsigned long n = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<unsigned long>(c - '0');
  }
  if (n != port) return false;
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return is_loopback_host(lower);
}

bool same_origin(std::string_view origin, std::string_view fetch_site, std::string_view host) {
  if (!fetch_site.empty() && fetch_site != "same-origin" && fetch_site != "none") return false;
  if (origin.empty()) return true;
  // "null" (a sandboxed frame, a file: page) is never our page. https: is
  // the page reached through a TLS proxy that keeps the Host header.
  for (std::string_view scheme : {"http://", "https://"})
    if (origin.size() > scheme.size() && iequals(origin.substr(0, scheme.size()), scheme))
      return !host.empty() && iequals(origin.substr(scheme.size()), host);
  return false;
}

verdict check_request(const request_facts& req, const serve_policy& policy) {
  if (!policy.token.empty()) {
    if (!public_path(req.path) && !bearer_matches(req.authorization, policy.token))
      return {401, errc::unauthorized,
              "this server needs a token: send \"Authorization: Bearer TOKEN\" (smithers serve "
              "--token)"};
  } else if (policy.loopback && !loopback_host_header(req.host, policy.port)) {
    // A page on another name that resolves to 127.0.0.1 (DNS rebinding)
    // sends its own name as Host: nothing is served to it.
    return {
        403, errc::forbidden,
        "Host \"" + std::string{req.host} +
            "\" does not name this server: use http://127.0.0.1:" + std::to_string(policy.port) +
            "/ or http://localhost:" + std::to_string(policy.port) + "/"};
  }
  if (mutating(req.method) && !same_origin(req.origin, req.fetch_site, req.host))
    return {403, errc::forbidden,
            "a request from another origin (" +
                std::string{req.origin.empty() ? req.fetch_site : req.origin} +
                ") may not change runs through this server"};
  return {};
}

int status_for(std::string_view code) {
  struct row {
    const char* code;
    int status;
  };
  static constexpr row rows[] = {
      {errc::invalid_input, 400},
      {errc::invalid_run_id, 400},
      {errc::invalid_argument, 400},
      {errc::invalid_workflow, 400},
      {errc::unauthorized, 401},
      {errc::forbidden, 403},
      {errc::run_not_found, 404},
      {errc::not_found, 404},
      {errc::method_not_allowed, 405},
      {errc::run_not_resumable, 409},
      {errc::run_owner_alive, 409},
      {errc::run_still_running, 409},
      {errc::run_resume_claim_failed, 409},
      {errc::resume_metadata_mismatch, 409},
      {errc::server_busy, 503},
  };
  for (const auto& r : rows)
    if (code == r.code) return r.status;
  return 500;
}

std::string sse_event(std::string_view id, std::string_view type, std::string_view data) {
  auto line = [](std::string& out, std::string_view field, std::string_view value) {
    out.append(field).append(": ");
    for (char c : value)
      out.push_back(c == '\n' || c == '\r' ? ' ' : c);
    out.push_back('\n');
  };
  std::string out;
  out.reserve(data.size() + type.size() + id.size() + 24);
  if (!id.empty()) line(out, "id", id);
  if (!type.empty()) line(out, "event", type);
  line(out, "data", data);
  out.push_back('\n');
  return out;
}

} // namespace smithers::http
