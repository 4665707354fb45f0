#include "actors/wire.hpp"

#include <caf/openssl/all.hpp>

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

caf::error json_text_from_wire(const std::string& text, json& out) {
  return executors::json_from_wire(text, out);
}

} // namespace smithers::actors
