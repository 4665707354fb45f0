// Fuzz target `command_output`: what a command prints on stdout, taken as
// run_command takes it (executors/command.hpp), without running anything.
// The bytes are cut into lines as util::run_subprocess cuts them (a line
// ends at '\n', '\r' or "\r\n"); every line goes through
// parse_heartbeat_line and, with data, check_heartbeat_data; heartbeat
// lines are dropped from stdout (with their end); then find_output finds
// the output object in what is left, check_output checks it as execute()
// does, and last_lines / valid_utf8 make the tails stored with failures.
//
// Oracle: no crash or hang (the brace scan is budgeted), only smithers_error
// escapes; a heartbeat error has a heartbeat code; find_output gives an
// object or a refusal (INVALID_OUTPUT), never both, and an object within
// limits::max_output_depth; stdout that is exactly one JSON object is that
// object; extract_output agrees; tails and valid_utf8 are valid UTF-8,
// valid_utf8 leaves valid text alone; errors serialize.
#include "fuzz_support.hpp"

#include "executors/command.hpp"
#include "executors/executor.hpp"
#include "util/json_parse.hpp"

#include <smithers/limits.hpp>

using namespace smithers;

namespace {

std::string_view trim(std::string_view s) {
  auto space = [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
  };
  while (!s.empty() && space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && space(s.back()))
    s.remove_suffix(1);
  return s;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = fuzz::as_text(data, size);
  std::string out; // stdout without heartbeat lines
  out.reserve(text.size());
  std::size_t heartbeats = 0;
  bool last_dropped = false;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find_first_of("\r\n", pos);
    bool terminated = end != std::string_view::npos;
    if (!terminated) end = text.size();
    // "\r\n" is one end: the '\n' goes with the line before it.
    std::size_t next = end + 1;
    if (terminated && text[end] == '\r' && end + 1 < text.size() && text[end + 1] == '\n')
      next = end + 2;
    std::string_view line = text.substr(pos, end - pos);
    bool marker = false;
    try {
      auto hb = executors::parse_heartbeat_line(line);
      marker = hb.has_value();
      if (hb && !hb->is_null())
        if (auto err = util::check_heartbeat_data(*hb)) {
          fuzz::require(err->code == errc::heartbeat_payload_too_large ||
                            err->code == errc::heartbeat_payload_not_json,
                        "check_heartbeat_data: an unexpected code", err->code);
          fuzz::check_error(*err);
        }
    } catch (const smithers_error& e) {
      marker = true;
      fuzz::require(e.code() == errc::heartbeat_payload_too_large ||
                        e.code() == errc::heartbeat_payload_not_json,
                    "parse_heartbeat_line: an unexpected code", e.code());
      fuzz::check_error(e.err());
    } catch (const std::exception& e) {
      fuzz::finding(std::string{"parse_heartbeat_line threw "} + e.what());
    }
    if (marker)
      ++heartbeats;
    else
      out.append(text.substr(pos, std::min(next, text.size()) - pos));
    last_dropped = marker;
    pos = std::min(next, text.size());
  }
  (void)last_dropped;

  fuzz::guarded("find_output", [&] {
    auto found = executors::find_output(out);
    fuzz::require(!(found.output && found.refused), "an output and a refusal");
    if (found.refused) {
      fuzz::require(found.refused->code == errc::invalid_output,
                    "a refusal that is not INVALID_OUTPUT", found.refused->code);
      fuzz::check_error(*found.refused);
    }
    if (found.output) {
      fuzz::require(found.output->is_object(), "an output that is not an object");
      fuzz::require(!util::check_depth(*found.output, limits::max_output_depth,
                                       errc::invalid_output, "output"),
                    "an output deeper than max_output_depth");
      fuzz::dump_strict(*found.output, "the output");
    }
    // Stdout that is one JSON object is that object.
    util::json_parse_error err;
    auto whole = util::parse_json(trim(out), {limits::max_output_depth}, &err);
    if (whole && whole->is_object())
      fuzz::require(found.output && *found.output == *whole,
                    "stdout is one JSON object but another output was taken", out);
    auto extracted = executors::extract_output(out);
    fuzz::require(extracted.has_value() == found.output.has_value() &&
                      (!extracted || *extracted == *found.output),
                  "extract_output disagrees with find_output");

    if (found.output) {
      executors::task_request req;
      req.key = {"fuzz", 0};
      req.max_output_bytes = limits::default_max_output_bytes;
      if (auto bad = executors::check_output(req, *found.output)) fuzz::check_error(*bad);
    }
  });

  auto tail = executors::last_lines(out, 20);
  fuzz::require(util::is_valid_utf8(tail), "last_lines is not valid UTF-8");
  fuzz::require(tail.size() <= 3 * 8 * 1024, "last_lines is longer than its bound");
  auto clean = executors::valid_utf8(out);
  fuzz::require(util::is_valid_utf8(clean), "valid_utf8 is not valid UTF-8");
  fuzz::require(util::is_valid_utf8(out) == (clean == out),
                "valid_utf8 changed valid text, or left invalid text alone");
  return 0;
}
