// What engines and workers share about the network between them
// (docs/operations.md, "Workers"): the TLS files of mutual TLS and the
// checks of a HOST:PORT. No CAF here.
#pragma once

#include <smithers/errors.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace smithers {

/// Mutual TLS between an owner and its workers: this end's certificate and
/// key (PEM) and the CA that signed the other end's. All three or none.
struct tls_files {
  std::string cert;
  std::string key;
  std::string ca;
  bool enabled() const { return !cert.empty() || !key.empty() || !ca.empty(); }
};

/// A worker's address.
struct endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string to_string() const; // "host:port" ("[::1]:port" for IPv6)
};

/// Parses "HOST:PORT" ("[IPv6]:PORT" too); port 1-65535 (0 too when
/// `allow_any_port`: a listener picks one). INVALID_ARGUMENT naming
/// `option` otherwise.
endpoint parse_endpoint(const std::string& text, const char* option, bool allow_any_port = false);

/// Whether `host` is a loopback address or "localhost".
bool is_loopback_host(const std::string& host);

/// Checks TLS files before anything listens or connects: all three given,
/// readable PEM, the key matches the certificate, and the certificate is
/// signed by the CA. INVALID_ARGUMENT with what is wrong otherwise.
void check_tls_files(const tls_files& tls);

} // namespace smithers
