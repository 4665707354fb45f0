// smithers/remote.hpp: worker addresses (parse_endpoint, is_loopback_host)
// and the TLS files checked before anything listens or connects
// (check_tls_files). Table-driven; the certificates are made with the
// openssl command in a temp dir.
#include <smithers/errors.hpp>
#include <smithers/remote.hpp>

#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

using namespace smithers;

namespace {

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

/// The INVALID_ARGUMENT message `f` throws ("" when it does not throw, or
/// throws something else: the CHECKs say which).
template <class F> std::string invalid_argument_of(F&& f) {
  try {
    f();
  } catch (const smithers_error& e) {
    CHECK(e.code() == std::string{errc::invalid_argument});
    return e.err().message;
  } catch (const std::exception& e) {
    FAIL_CHECK("not a smithers_error: " << e.what());
    return "";
  }
  FAIL_CHECK("no error");
  return "";
}

} // namespace

TEST_CASE("parse_endpoint: HOST:PORT and [IPv6]:PORT, and their to_string") {
  struct good {
    std::string text;
    bool any_port;
    std::string host;
    std::uint16_t port;
    std::string shown; // to_string()
  };
  const std::vector<good> rows = {
      {"127.0.0.1:80", false, "127.0.0.1", 80, "127.0.0.1:80"},
      {"localhost:65535", false, "localhost", 65535, "localhost:65535"},
      {"host-name.example:1", false, "host-name.example", 1, "host-name.example:1"},
      {"under_score:8080", false, "under_score", 8080, "under_score:8080"},
      {"[::1]:7000", false, "::1", 7000, "[::1]:7000"},
      {"[fe80::1]:443", false, "fe80::1", 443, "[fe80::1]:443"},
      {"[::ffff:127.0.0.1]:9", false, "::ffff:127.0.0.1", 9, "[::ffff:127.0.0.1]:9"},
      {"0.0.0.0:0", true, "0.0.0.0", 0, "0.0.0.0:0"}, // a listener picks the port
      {"[::]:0", true, "::", 0, "[::]:0"},
      {"127.0.0.1:65535", true, "127.0.0.1", 65535, "127.0.0.1:65535"},
      {"h:00080", false, "h", 80, "h:80"}, // leading zeros, 5 digits at most
      {std::string(298, 'a') + ":1", false, std::string(298, 'a'), 1,
       std::string(298, 'a') + ":1"}, // 300 characters: the most
  };
  for (const auto& r : rows) {
    CAPTURE(r.text, r.any_port);
    endpoint ep;
    REQUIRE_NOTHROW(ep = parse_endpoint(r.text, "--listen", r.any_port));
    CHECK(ep.host == r.host);
    CHECK(ep.port == r.port);
    CHECK(ep.to_string() == r.shown);
    // What to_string gives parses back to the same address.
    auto again = parse_endpoint(ep.to_string(), "--listen", r.any_port);
    CHECK(again.host == ep.host);
    CHECK(again.port == ep.port);
  }
}

TEST_CASE("parse_endpoint: what is not HOST:PORT is INVALID_ARGUMENT naming the option") {
  const std::string port_range = "the port must be a number from 1 to 65535";
  const std::string bracketed = "an IPv6 address is written [ADDRESS]:PORT";
  struct bad {
    std::string text;
    bool any_port;
    std::string says;
  };
  const std::vector<bad> rows = {
      {"", false, "not an address"},
      {std::string(298, 'a') + ":10", false, "not an address"}, // 301 characters
      {std::string(5000, 'a') + ":1", true, "not an address"},
      {"localhost", false, "no port"},
      {"127.0.0.1", true, "no port"},
      {"localhost:", false, port_range},
      {"localhost:0", false, port_range},
      {"localhost:00000", false, port_range},
      {"localhost:65536", false, port_range},
      {"localhost:65536", true, port_range},
      {"localhost:99999", true, port_range},
      {"localhost:100000", false, port_range}, // 6 digits
      {"localhost:000080", false, port_range}, // 6 characters, even if 80
      {"localhost:-1", false, port_range},
      {"localhost:+80", false, port_range},
      {"localhost:80a", false, port_range},
      {"localhost: 80", false, port_range},
      {"localhost:8 0", false, port_range},
      {":80", false, "no host"},
      {":0", true, "no host"},
      {"a b:80", false, "a character not allowed"},
      {"a/b:80", false, "a character not allowed"},
      {"h\xc3\xa9:80", false, "a character not allowed"}, // not ASCII
      {std::string("a\0b:80", 6), false, "a character not allowed"},
      {"::1:80", false, bracketed},
      {"fe80::1:443", false, bracketed},
      {"[::1]80", false, bracketed},
      {"[::1]", false, bracketed},
      {"[::1", false, bracketed},
      {"[::1]:", false, port_range},
      {"[::1]:0", false, port_range},
      {"[::1]:65536", true, port_range},
      {"[nothost]:80", false, "not an IPv6 address"},
      {"[127.0.0.1]:80", false, "not an IPv6 address"},
      {"[]:80", false, "not an IPv6 address"},
      {"[fe80::1%eth0]:80", false, "not an IPv6 address"}, // scope ids are not taken
  };
  for (const auto& r : rows) {
    CAPTURE(r.text, r.any_port);
    auto msg = invalid_argument_of([&] { parse_endpoint(r.text, "--listen", r.any_port); });
    CAPTURE(msg);
    CHECK(contains(msg, r.says));
    CHECK(contains(msg, "--listen"));
    CHECK(contains(msg, "(expected HOST:PORT)"));
  }
  // The whole message: the option, the text as given, why, the expected form.
  CHECK(invalid_argument_of([] { parse_endpoint("localhost", "worker"); }) ==
        "worker \"localhost\": no port (expected HOST:PORT)");
  // Port 0 is for listeners only: the default refuses it.
  CHECK(contains(invalid_argument_of([] { parse_endpoint("127.0.0.1:0", "worker"); }), port_range));
}

TEST_CASE("is_loopback_host: 127/8, ::1 and localhost") {
  const std::pair<const char*, bool> rows[] = {
      {"127.0.0.1", true},
      {"127.255.0.1", true},
      {"127.0.0.0", true},
      {"localhost", true},
      {"::1", true},
      {"0:0:0:0:0:0:0:1", true},
      {"10.0.0.1", false},
      {"0.0.0.0", false},
      {"::", false},
      {"128.0.0.1", false},
      {"126.255.255.255", false},
      {"example.com", false},
      {"localhost.example", false},
      {"127.0.0.1.example", false},
      {"", false},
      {"::2", false},
      {"fe80::1", false},
      {"192.168.1.1", false},
  };
  for (const auto& [host, loopback] : rows) {
    CAPTURE(host);
    CHECK(is_loopback_host(host) == loopback);
  }
}

TEST_CASE(
    "check_tls_files: none, or all three of a key, its certificate and the CA that signed it") {
  // Without TLS there is nothing to check.
  CHECK_NOTHROW(check_tls_files(tls_files{}));
  CHECK_FALSE(tls_files{}.enabled());

  test_support::temp_dir dir;
  // Two CAs; certificates signed by each (EC keys: quick to make).
  const std::string script = "cd '" + dir.path() + R"sh(' && ( set -e
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out $1.key; }
ca() { key $1; openssl req -x509 -new -key $1.key -out $1.pem -days 2 -subj "/CN=$1"; }
cert() { key $1; openssl req -new -key $1.key -out $1.csr -subj "/CN=$1"
         openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem -days 2; }
ca ca; ca other-ca
cert worker ca; cert owner ca; cert intruder other-ca
openssl pkey -in worker.key -aes256 -passout pass:secret -out locked.key
cat other-ca.pem ca.pem > both-cas.pem
echo 'not a certificate' > junk.txt
: > empty.pem
) >/dev/null 2>&1)sh";
  INFO(script);
  REQUIRE(std::system(script.c_str()) == 0);
  auto f = [&](const std::string& name) { return dir.file(name); };

  SECTION("good: a certificate and its key, signed by the CA given") {
    const tls_files rows[] = {
        {f("worker.pem"), f("worker.key"), f("ca.pem")},
        {f("owner.pem"), f("owner.key"), f("ca.pem")},
        {f("intruder.pem"), f("intruder.key"), f("other-ca.pem")},
        {f("worker.pem"), f("worker.key"), f("both-cas.pem")}, // the CA file holds several
        {f("ca.pem"), f("ca.key"), f("ca.pem")},               // the CA itself
    };
    for (const auto& t : rows) {
      CAPTURE(t.cert, t.key, t.ca);
      CHECK(t.enabled());
      CHECK_NOTHROW(check_tls_files(t));
    }
  }

  SECTION("bad: what is wrong, named") {
    struct bad {
      tls_files tls;
      std::vector<std::string> says;
    };
    const std::string all_three = "TLS needs all three of --tls-cert, --tls-key and --tls-ca";
    const std::vector<bad> rows = {
        // Some but not all.
        {{f("worker.pem"), "", ""}, {all_three}},
        {{"", f("worker.key"), ""}, {all_three}},
        {{"", "", f("ca.pem")}, {all_three}},
        {{f("worker.pem"), f("worker.key"), ""}, {all_three}},
        {{"", f("worker.key"), f("ca.pem")}, {all_three}},
        {{f("worker.pem"), "", f("ca.pem")}, {all_three}},
        // Files that are not there.
        {{f("nope.pem"), f("worker.key"), f("ca.pem")},
         {"--tls-cert: cannot read \"" + f("nope.pem") + "\""}},
        {{f("worker.pem"), f("nope.key"), f("ca.pem")},
         {"--tls-key: cannot read \"" + f("nope.key") + "\""}},
        {{f("worker.pem"), f("worker.key"), f("nope-ca.pem")},
         {"--tls-ca: cannot read \"" + f("nope-ca.pem") + "\""}},
        {{dir.path() + "/no/such/dir/c.pem", f("worker.key"), f("ca.pem")},
         {"--tls-cert: cannot read"}},
        // Files that are not what they should be.
        {{f("junk.txt"), f("worker.key"), f("ca.pem")},
         {"--tls-cert \"" + f("junk.txt") + "\" is not a PEM certificate"}},
        {{f("empty.pem"), f("worker.key"), f("ca.pem")}, {"is not a PEM certificate"}},
        {{f("worker.key"), f("worker.key"), f("ca.pem")}, {"is not a PEM certificate"}},
        {{f("worker.pem"), f("junk.txt"), f("ca.pem")},
         {"--tls-key \"" + f("junk.txt") + "\" is not an unencrypted PEM private key"}},
        {{f("worker.pem"), f("worker.pem"), f("ca.pem")},
         {"is not an unencrypted PEM private key"}},
        // Encrypted: refused, not asked for on the terminal.
        {{f("worker.pem"), f("locked.key"), f("ca.pem")},
         {"--tls-key \"" + f("locked.key") + "\" is not an unencrypted PEM private key"}},
        {{f("worker.pem"), f("worker.key"), f("junk.txt")},
         {"--tls-ca \"" + f("junk.txt") + "\" holds no PEM certificate"}},
        {{f("worker.pem"), f("worker.key"), f("empty.pem")}, {"holds no PEM certificate"}},
        // A key of another certificate.
        {{f("worker.pem"), f("owner.key"), f("ca.pem")},
         {"--tls-key \"" + f("owner.key") + "\" does not belong to the certificate \"" +
          f("worker.pem") + "\""}},
        {{f("worker.pem"), f("ca.key"), f("ca.pem")}, {"does not belong"}},
        // Signed by another CA, or the CA not given.
        {{f("intruder.pem"), f("intruder.key"), f("ca.pem")},
         {"--tls-cert \"" + f("intruder.pem") + "\" is not signed by the CA in \"" + f("ca.pem") +
          "\": "}},
        {{f("worker.pem"), f("worker.key"), f("other-ca.pem")}, {"is not signed by the CA"}},
        {{f("worker.pem"), f("worker.key"), f("worker.pem")}, {"is not signed by the CA"}},
    };
    for (const auto& r : rows) {
      CAPTURE(r.tls.cert, r.tls.key, r.tls.ca);
      CHECK(r.tls.enabled());
      auto msg = invalid_argument_of([&] { check_tls_files(r.tls); });
      CAPTURE(msg);
      for (const auto& s : r.says)
        CHECK(contains(msg, s));
    }
  }
}
