#include "actors/wire.hpp"

#include <caf/openssl/all.hpp>

#include <dlfcn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdlib>

namespace smithers::actors {

void register_wire_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<node_key>("smithers.node_key");
  cfg.add_message_type<attempt_key>("smithers.attempt_key");
  cfg.add_message_type<executors::task_request>("smithers.task_request");
  cfg.add_message_type<remote_task>("smithers.remote_task");
  cfg.add_message_type<std::vector<remote_task>>("smithers.remote_tasks");
  cfg.add_message_type<remote_cancel>("smithers.remote_cancel");
  cfg.add_message_type<std::vector<remote_cancel>>("smithers.remote_cancels");
  cfg.add_message_type<remote_work>("smithers.remote_work");
  cfg.add_message_type<remote_result>("smithers.remote_result");
  cfg.add_message_type<std::vector<remote_result>>("smithers.remote_results");
  cfg.add_message_type<remote_beat>("smithers.remote_beat");
  cfg.add_message_type<std::vector<remote_beat>>("smithers.remote_beats");
  cfg.add_message_type<remote_proc>("smithers.remote_proc");
  cfg.add_message_type<std::vector<remote_proc>>("smithers.remote_procs");
  cfg.add_message_type<remote_output>("smithers.remote_output");
  cfg.add_message_type<std::vector<remote_output>>("smithers.remote_outputs");
  cfg.add_message_type<remote_report>("smithers.remote_report");
  cfg.add_message_type<worker_info>("smithers.worker_info");
}

void configure_network(caf::actor_system_config& cfg, const tls_files& tls) {
  cfg.load<caf::io::middleman>();
  cfg.set("middleman.heartbeat-interval", caf::timespan{heartbeat_interval});
  cfg.set("middleman.connection-timeout", caf::timespan{network_timeout});
  if (tls.enabled()) {
    cfg.load<caf::openssl::manager>();
    cfg.openssl_certificate = tls.cert;
    cfg.openssl_key = tls.key;
    cfg.openssl_cafile = tls.ca;
  }
}

caf::io::middleman_actor network_handle(caf::actor_system& sys, bool tls) {
  return tls ? sys.openssl_manager().actor_handle() : sys.middleman().actor_handle();
}

} // namespace smithers::actors

// -- OpenSSL's error queue, around CAF's TLS sessions -------------------------
//
// OpenSSL keeps one error queue per thread, and SSL_get_error() reads it:
// "the current thread's error queue must be empty before the TLS/SSL I/O
// operation is attempted, or SSL_get_error() will not work reliably"
// (SSL_get_error(3)). CAF 0.17.6 runs every TLS connection of a process on
// its multiplexer thread and never empties the queue (only its logging,
// compiled out in Debian's build, would). So one connection's failure — a
// worker killed (OpenSSL 3 queues "unexpected eof"), a peer that fails the
// handshake (a plaintext client, another CA's certificate) — was read as
// the failure of the next connection the thread served: killing one worker
// dropped the owner's connection to the other (tests/system/worker_test.cpp,
// "two workers with mutual TLS").
//
// The fix belongs in CAF's session.cpp; with the library as packaged, these
// definitions interpose on the four calls CAF makes (an executable's
// definitions come before libssl's in the dynamic linker's lookup) and empty
// the queue before calling OpenSSL's own. For any other caller that is what
// the manual asks of it anyway.
namespace {

template <class Fn> Fn real_ssl(const char* name) {
  void* sym = dlsym(RTLD_NEXT, name);
  if (!sym) std::abort(); // libssl is linked: cannot happen
  return reinterpret_cast<Fn>(sym);
}

} // namespace

extern "C" {

int SSL_read(SSL* ssl, void* buf, int num) {
  static const auto real = real_ssl<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static const auto real = real_ssl<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_connect(SSL* ssl) {
  static const auto real = real_ssl<int (*)(SSL*)>("SSL_connect");
  ERR_clear_error();
  return real(ssl);
}

int SSL_accept(SSL* ssl) {
  static const auto real = real_ssl<int (*)(SSL*)>("SSL_accept");
  ERR_clear_error();
  return real(ssl);
}

} // extern "C"
