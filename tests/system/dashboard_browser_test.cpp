// The dashboard in a real browser: headless Chromium driven by ChromeDriver
// over WebDriver (Debian's chromium and chromium-driver; `./dev test`
// installs them). It opens the page on a live run that waits for an
// approval, approves it with the page's button and sees the run finish. The
// screenshot is kept as a test artifact (build/tests/artifacts/).
#include "system/serve_support.hpp"

#include <openssl/evp.h>

#include <arpa/inet.h>
#include <filesystem>
#include <fstream>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace smithers::system_test;
using smithers::json;

namespace {

// A port nobody listens on now (ChromeDriver needs one given to it).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string base64_decode(const std::string& text) {
  std::string out(text.size() / 4 * 3 + 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  REQUIRE(n >= 0);
  std::size_t pad = 0;
  for (auto it = text.rbegin(); it != text.rend() && *it == '='; ++it)
    ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

/// A WebDriver session on a ChromeDriver process.
class browser {
public:
  browser() {
    port_ = free_port();
    command_options opts;
    opts.timeout = std::chrono::seconds(300);
    driver_ = std::make_unique<child_process>(
        std::vector<std::string>{"chromedriver", "--port=" + std::to_string(port_)}, opts);
    http_ = std::make_unique<httplib::Client>("127.0.0.1", port_);
    http_->set_read_timeout(60, 0);
    REQUIRE(eventually([&] {
      auto r = http_->Get("/status");
      return r && r->status == 200 && json::parse(r->body)["value"]["ready"] == true;
    }));
    json caps = {{"capabilities",
                  {{"alwaysMatch",
                    {{"browserName", "chrome"},
                     {"goog:chromeOptions",
                      {{"binary", "/usr/bin/chromium"},
                       {"args",
                        {"--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"}}}}}}}}};
    auto r = call("POST", "/session", caps);
    session_ = r["value"]["sessionId"].get<std::string>();
  }

  ~browser() {
    if (!session_.empty()) http_->Delete(("/session/" + session_).c_str());
  }

  json call(const std::string& method, const std::string& path, const json& body = json::object()) {
    httplib::Result r = method == "GET"
                            ? http_->Get(path.c_str())
                            : http_->Post(path.c_str(), body.dump(), "application/json");
    REQUIRE(r);
    INFO(method << " " << path << " -> " << r->status << " " << r->body);
    REQUIRE(r->status == 200);
    return json::parse(r->body);
  }

  json session_call(const std::string& method, const std::string& path,
                    const json& body = json::object()) {
    return call(method, "/session/" + session_ + path, body);
  }

  void open(const std::string& url) { session_call("POST", "/url", {{"url", url}}); }

  /// The element's WebDriver id, or "" when the selector matches nothing.
  std::string find(const std::string& css) {
    auto r =
        http_->Post(("/session/" + session_ + "/element").c_str(),
                    json{{"using", "css selector"}, {"value", css}}.dump(), "application/json");
    if (!r || r->status != 200) return "";
    auto v = json::parse(r->body)["value"];
    for (auto& [k, id] : v.items())
      return id.get<std::string>();
    return "";
  }

  std::string text_of(const std::string& css) {
    auto id = find(css);
    if (id.empty()) return "";
    auto r = http_->Get(("/session/" + session_ + "/element/" + id + "/text").c_str());
    if (!r || r->status != 200) return ""; // replaced while read: ask again
    return json::parse(r->body)["value"].get<std::string>();
  }

  void click(const std::string& css) {
    auto id = find(css);
    REQUIRE(!id.empty());
    session_call("POST", "/element/" + id + "/click");
  }

  std::string screenshot_png() {
    return base64_decode(session_call("GET", "/screenshot")["value"].get<std::string>());
  }

private:
  int port_ = 0;
  std::unique_ptr<child_process> driver_;
  std::unique_ptr<httplib::Client> http_;
  std::string session_;
};

void keep_screenshot(browser& b, const std::string& name) {
  auto png = b.screenshot_png();
  CHECK(png.substr(1, 3) == "PNG");
  std::filesystem::create_directories(SMITHERS_ARTIFACT_DIR);
  std::ofstream(std::string{SMITHERS_ARTIFACT_DIR} + "/" + name, std::ios::binary) << png;
}

bool have(const char* program) {
  return run_command({"sh", "-c", std::string{"command -v "} + program}).exit_code == 0;
}

} // namespace

TEST_CASE("dashboard: approve a waiting run with the page's button and watch it finish") {
  INFO("needs Debian's chromium and chromium-driver (./dev test installs them)");
  REQUIRE(have("chromedriver"));
  REQUIRE(std::filesystem::exists("/usr/bin/chromium"));

  sandbox sb;
  sb.write(
      "gated.json",
      json{{"name", "gated"},
           {"root",
            {{"sequence",
              {{{"task", "build"}, {"run", {"sh", "-c", "echo '{\"artifact\": \"app.tgz\"}'"}}},
               {{"approval", "deploy"}, {"title", "Deploy app.tgz?"}},
               {{"task", "after"}, {"value", {{"done", true}}}}}}}}});
  auto run = sb.start({"run", "gated.json", "--run-id", "g1", "--wait"});
  serving srv{sb};
  REQUIRE(eventually([&] {
    auto r = srv.client()->Get("/v1/runs/g1");
    return r && r->status == 200 && json::parse(r->body)["run"]["status"] == "waiting-approval";
  }));

  browser b;
  b.open(srv.url() + "#/runs/g1");
  const std::string approve = R"(button[data-action="approve"][data-node-id="deploy"])";
  REQUIRE(eventually([&] { return !b.find(approve).empty(); }));
  CHECK(eventually([&] { return b.text_of("#run-status") == "waiting-approval"; }));
  CHECK(eventually([&] { return b.text_of("#stream-state") == "live"; }));
  CHECK(!b.find(R"([data-node-id="build"][data-state="finished"])").empty());

  keep_screenshot(b, "dashboard-waiting.png");

  b.click(approve);
  // The page hears of the decision and of the run's end through its event
  // stream, not by reloading.
  CHECK(eventually([&] { return b.text_of("#run-status") == "finished"; }));
  CHECK(eventually(
      [&] { return !b.find(R"([data-node-id="after"][data-state="finished"])").empty(); }));
  CHECK(b.text_of("#action-error").empty());
  // The log is drawn in batches: what it shows comes a moment later.
  CHECK(eventually([&] { return contains(b.text_of("#event-log"), "ApprovalDecided"); }));
  CHECK(eventually([&] { return contains(b.text_of("#event-log"), "RunFinished"); }));

  auto res = run->wait();
  INFO(res);
  CHECK(res.exit_code == 0);
  auto decided = sb.inspect("g1");
  CHECK(decided["run"]["status"] == "finished");

  // The runs list shows it too.
  b.open(srv.url() + "#/");
  CHECK(eventually([&] { return contains(b.text_of("#runs-table"), "finished"); }));
  b.open(srv.url() + "#/runs/g1");
  CHECK(eventually([&] { return b.text_of("#run-status") == "finished"; }));
  keep_screenshot(b, "dashboard-finished.png");
}
