// What a run is started from, read for `smithers run`: --input (inline,
// @file, stdin) and the git revision of the workflow file.
#include "cli.hpp"

#include "util/json_parse.hpp"
#include "util/read_file.hpp"
#include "util/subprocess.hpp"

#include <smithers/limits.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>

namespace smithers::cli {

namespace {

// Whether `dir` is inside a git work tree, as far as a look for ".git" up to
// the root can tell (GIT_DIR set: ask git). Outside one, no git process is
// started: that was 15% of `smithers run`'s time to its first task.
bool maybe_in_repository(const std::string& dir) {
  if (std::getenv("GIT_DIR")) return true;
  std::error_code ec;
  auto p = std::filesystem::absolute(dir, ec);
  if (ec) return true;
  for (;;) {
    if (std::filesystem::exists(p / ".git", ec) || ec) return true;
    if (!p.has_relative_path()) return false; // the root
    p = p.parent_path();
  }
}

} // namespace

std::string git_revision(const std::string& file) {
  auto slash = file.rfind('/');
  std::string dir = slash == std::string::npos ? "." : file.substr(0, slash + 1);
  if (!maybe_in_repository(dir)) return "";
  util::subprocess_request req;
  req.argv = {"git", "-C", dir, "rev-parse", "HEAD"};
  req.timeout = std::chrono::milliseconds{5000};
  auto res = util::run_subprocess(req);
  if (!res.exited || res.exit_code != 0) return "";
  auto rev = res.out;
  while (!rev.empty() && (rev.back() == '\n' || rev.back() == '\r'))
    rev.pop_back();
  return rev;
}

namespace {

// Text of an input beyond this is refused unread: its serialized size is
// checked against limits::max_input_bytes once parsed, and whitespace may
// make the text larger than that.
constexpr std::size_t max_input_text_bytes = 4 * limits::max_input_bytes;

// At most max_input_text_bytes + 1 bytes: enough to know it is too large.
std::string read_capped(std::istream& in) {
  std::string text(max_input_text_bytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return text;
}

} // namespace

json read_input(const std::string& arg, const char* option) {
  std::string text;
  std::string where = option;
  std::string what = std::string{option} == "--input" ? "input" : "data";
  if (arg == "-") {
    text = read_capped(std::cin);
    where = "stdin";
  } else if (!arg.empty() && arg[0] == '@') {
    std::string file = arg.substr(1);
    auto read = util::read_regular_file(file, max_input_text_bytes);
    if (read.too_large)
      throw smithers_error(errc::invalid_input,
                           what + " file \"" + file + "\" is larger than the limit of " +
                               std::to_string(max_input_text_bytes) + " bytes");
    if (!read.error.empty())
      throw smithers_error(errc::invalid_input,
                           "cannot read " + what + " file \"" + file + "\": " + read.error);
    text = std::move(read.text);
    where = file;
  } else {
    text = arg;
  }
  if (text.size() > max_input_text_bytes)
    throw smithers_error(errc::invalid_input, what + " from " + where +
                                                  " is larger than the limit of " +
                                                  std::to_string(max_input_text_bytes) + " bytes");
  util::json_parse_error err;
  auto j = util::parse_json(text, {limits::max_input_depth, max_input_text_bytes}, &err);
  if (!j) {
    error e = util::to_error(err, errc::invalid_input, what + " from " + where);
    if (err.what == util::json_problem::syntax)
      e.message = what + " from " + where + " is not valid JSON: " + err.message;
    throw smithers_error(std::move(e));
  }
  return std::move(*j);
}

} // namespace smithers::cli
