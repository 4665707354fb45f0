// smithers/remote.hpp: addresses and TLS files, checked before any socket.
#include <smithers/remote.hpp>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <cctype>
#include <memory>

namespace smithers {

namespace {

[[noreturn]] void bad(const std::string& msg) {
  throw smithers_error(errc::invalid_argument, msg);
}

std::string openssl_reason() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "not PEM";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// An encrypted key would make OpenSSL ask for a passphrase on the terminal:
// refuse it instead.
int no_passphrase(char*, int, int, void*) {
  return -1;
}

struct bio_free {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct x509_free {
  void operator()(X509* x) const { X509_free(x); }
};
struct pkey_free {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct store_free {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct store_ctx_free {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};

std::unique_ptr<BIO, bio_free> open_file(const std::string& path, const char* option) {
  std::unique_ptr<BIO, bio_free> b{BIO_new_file(path.c_str(), "r")};
  if (!b) {
    ERR_clear_error();
    bad(std::string{option} + ": cannot read \"" + path + "\"");
  }
  return b;
}

} // namespace

std::string endpoint::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

endpoint parse_endpoint(const std::string& text, const char* option, bool allow_any_port) {
  auto fail = [&](const std::string& why) -> endpoint {
    bad(std::string{option} + " \"" + text + "\": " + why + " (expected HOST:PORT)");
  };
  if (text.empty() || text.size() > 300) return fail("not an address");
  endpoint ep;
  std::string port;
  if (text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return fail("an IPv6 address is written [ADDRESS]:PORT");
    ep.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    in6_addr a6;
    if (inet_pton(AF_INET6, ep.host.c_str(), &a6) != 1) return fail("not an IPv6 address");
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) return fail("no port");
    ep.host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (ep.host.find(':') != std::string::npos)
      return fail("an IPv6 address is written [ADDRESS]:PORT");
  }
  if (ep.host.empty()) return fail("no host");
  for (char c : ep.host)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
          c == ':' || c == '%'))
      return fail("the host has a character not allowed in a host name");
  if (port.empty() || port.size() > 5) return fail("the port must be a number from 1 to 65535");
  long n = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return fail("the port must be a number from 1 to 65535");
    n = n * 10 + (c - '0');
  }
  if (n > 65535 || (n == 0 && !allow_any_port))
    return fail("the port must be a number from 1 to 65535");
  ep.port = static_cast<std::uint16_t>(n);
  return ep;
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  in_addr a4;
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6;
  if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
  return false;
}

void check_tls_files(const tls_files& tls) {
  if (!tls.enabled()) return;
  if (tls.cert.empty() || tls.key.empty() || tls.ca.empty())
    bad("TLS needs all three of --tls-cert, --tls-key and --tls-ca");
  auto cb = open_file(tls.cert, "--tls-cert");
  std::unique_ptr<X509, x509_free> cert{
      PEM_read_bio_X509(cb.get(), nullptr, no_passphrase, nullptr)};
  if (!cert) bad("--tls-cert \"" + tls.cert + "\" is not a PEM certificate: " + openssl_reason());
  auto kb = open_file(tls.key, "--tls-key");
  std::unique_ptr<EVP_PKEY, pkey_free> key{
      PEM_read_bio_PrivateKey(kb.get(), nullptr, no_passphrase, nullptr)};
  if (!key)
    bad("--tls-key \"" + tls.key + "\" is not an unencrypted PEM private key: " + openssl_reason());
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    bad("--tls-key \"" + tls.key + "\" does not belong to the certificate \"" + tls.cert + "\"");
  }
  open_file(tls.ca, "--tls-ca");
  std::unique_ptr<X509_STORE, store_free> store{X509_STORE_new()};
  if (!store || X509_STORE_load_locations(store.get(), tls.ca.c_str(), nullptr) != 1)
    bad("--tls-ca \"" + tls.ca + "\" holds no PEM certificate: " + openssl_reason());
  std::unique_ptr<X509_STORE_CTX, store_ctx_free> ctx{X509_STORE_CTX_new()};
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr) != 1)
    bad("cannot check the certificate: " + openssl_reason());
  if (X509_verify_cert(ctx.get()) != 1) {
    int code = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    bad("--tls-cert \"" + tls.cert + "\" is not signed by the CA in \"" + tls.ca +
        "\": " + X509_verify_cert_error_string(code));
  }
}

} // namespace smithers
