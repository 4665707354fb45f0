// A `smithers serve` process for a test: started on a port the system
// picks, its address read from its first line, stopped with SIGTERM.
#pragma once

#include "system/cli_support.hpp"

#include <httplib.h>

#include <csignal>
#include <memory>
#include <string>
#include <vector>

namespace smithers::system_test {

class serving {
public:
  /// `smithers --db <sandbox db> --format json serve --listen 127.0.0.1:0 EXTRA...`
  explicit serving(const sandbox& sb, std::vector<std::string> extra = {},
                   std::string host = "127.0.0.1") {
    std::vector<std::string> args{"--format", "json", "serve", "--listen", host + ":0"};
    args.insert(args.end(), extra.begin(), extra.end());
    command_options opts;
    opts.timeout = std::chrono::seconds(300);
    proc_ = sb.start(args, opts);
    bool up = proc_->await_output("\n", std::chrono::seconds(30));
    INFO(proc_->output_so_far());
    REQUIRE(up);
    auto line = proc_->output_so_far().substr(0, proc_->output_so_far().find('\n'));
    auto j = json::parse(line);
    port_ = j.at("port").get<int>();
    url_ = j.at("url").get<std::string>();
    REQUIRE(port_ > 0);
  }

  ~serving() {
    if (proc_) proc_->signal(SIGTERM);
  }

  /// Stops the server and returns how it ended.
  command_result stop() {
    proc_->signal(SIGTERM);
    auto r = proc_->wait();
    return r;
  }

  int port() const { return port_; }
  const std::string& url() const { return url_; }
  std::string host_header() const { return "127.0.0.1:" + std::to_string(port_); }

  /// A client for this server (loopback), with generous timeouts.
  std::unique_ptr<httplib::Client> client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_connection_timeout(10, 0);
    c->set_read_timeout(60, 0);
    c->set_write_timeout(10, 0);
    return c;
  }

private:
  std::unique_ptr<child_process> proc_;
  int port_ = 0;
  std::string url_;
};

} // namespace smithers::system_test
