#include "executors/command.hpp"

#include "util/json_bounds.hpp"
#include "util/json_parse.hpp"

#include <smithers/limits.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <set>
#include <utility>

namespace smithers::executors {
namespace {

constexpr std::string_view marker = "::heartbeat";
constexpr std::size_t tail_lines = 20;
// Tails land in error details stored with every failed attempt: keep them small.
constexpr std::size_t tail_max_bytes = 8 * 1024;
// Failed parse attempts in the brace scan may cost at most this many times the
// text size, so pathological nesting cannot make extraction quadratic.
constexpr std::size_t parse_budget_factor = 8;
// Rescans after an unclosed '{' (prose like "use { to open").
constexpr int max_brace_rescans = 4;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_space(s.back()))
    s.remove_suffix(1);
  return s;
}

// "::heartbeat" alone or followed by whitespace (and the payload) after
// trimming; "::heartbeats" or "x ::heartbeat" are ordinary lines.
bool is_marker(std::string_view line, std::string_view* payload = nullptr) {
  line = trim(line);
  if (line.substr(0, marker.size()) != marker) return false;
  std::string_view rest = line.substr(marker.size());
  if (!rest.empty() && !is_space(rest.front())) return false;
  if (payload) *payload = trim(rest);
  return true;
}

} // namespace

// Child output is arbitrary bytes, but JSON strings must be UTF-8 (nlohmann
// throws when dumping invalid UTF-8): replace each bad byte with U+FFFD.
std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    std::size_t len = 0;
    std::uint32_t cp = 0, min = 0;
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    }
    bool ok = len > 0 && i + len <= n;
    for (std::size_t k = 1; ok && k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80)
        ok = false;
      else
        cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    ok = ok && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

std::string last_lines(std::string_view text, std::size_t n) {
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  std::vector<std::string_view> lines;
  while (lines.size() < n && !text.empty()) {
    std::size_t nl = text.rfind('\n');
    std::string_view line = nl == std::string_view::npos ? text : text.substr(nl + 1);
    if (!is_marker(line)) lines.push_back(line);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(0, nl);
  }
  std::string joined;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    if (!joined.empty() || it != lines.rbegin()) joined.push_back('\n');
    joined.append(*it);
  }
  if (joined.size() > tail_max_bytes) {
    std::size_t cut = joined.size() - tail_max_bytes;
    while (cut < joined.size() && (static_cast<unsigned char>(joined[cut]) & 0xC0) == 0x80)
      ++cut; // do not start inside a UTF-8 sequence
    joined.erase(0, cut);
  }
  return valid_utf8(joined);
}

namespace {

std::string signal_name(int sig) {
  switch (sig) {
  case SIGHUP:
    return "SIGHUP";
  case SIGINT:
    return "SIGINT";
  case SIGQUIT:
    return "SIGQUIT";
  case SIGILL:
    return "SIGILL";
  case SIGTRAP:
    return "SIGTRAP";
  case SIGABRT:
    return "SIGABRT";
  case SIGBUS:
    return "SIGBUS";
  case SIGFPE:
    return "SIGFPE";
  case SIGKILL:
    return "SIGKILL";
  case SIGUSR1:
    return "SIGUSR1";
  case SIGSEGV:
    return "SIGSEGV";
  case SIGUSR2:
    return "SIGUSR2";
  case SIGPIPE:
    return "SIGPIPE";
  case SIGALRM:
    return "SIGALRM";
  case SIGTERM:
    return "SIGTERM";
  case SIGXCPU:
    return "SIGXCPU";
  case SIGXFSZ:
    return "SIGXFSZ";
  case SIGSYS:
    return "SIGSYS";
  default:
    return "SIG" + std::to_string(sig);
  }
}

// A candidate for the output: an object, not JSON (or not an object: keep
// looking), or JSON the engine refuses (too deep, duplicate keys, a number
// out of range), which ends the search: a smaller object inside it would be
// taken for the output otherwise.
struct candidate {
  std::optional<json> object;
  std::optional<error> refused;
};

candidate parse_candidate(std::string_view s) {
  util::json_parse_error err;
  auto j = util::parse_json(s, {limits::max_output_depth}, &err);
  if (j) return {j->is_object() ? std::optional<json>(std::move(*j)) : std::nullopt, {}};
  if (err.what == util::json_problem::syntax) return {};
  return {{}, util::to_error(err, errc::invalid_output, "output")};
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// Contents of the ```json blocks, in order. Fences pair up left to right, so
// the closing fence of a ```python block is never taken for an opener.
std::vector<std::string_view> json_fences(std::string_view t) {
  std::vector<std::string_view> blocks;
  constexpr std::string_view fence = "```";
  std::size_t pos = 0;
  while ((pos = t.find(fence, pos)) != std::string_view::npos) {
    std::size_t tag_begin = pos + fence.size(), tag_end = tag_begin;
    while (tag_end < t.size() && !is_space(t[tag_end]) && t[tag_end] != '`' && t[tag_end] != '{')
      ++tag_end;
    std::size_t content = tag_end;
    // Skip the rest of the opening line when it is blank.
    std::size_t eol = t.find('\n', tag_end);
    if (eol != std::string_view::npos && trim(t.substr(tag_end, eol - tag_end)).empty())
      content = eol + 1;
    std::size_t close = t.find(fence, content);
    if (close == std::string_view::npos) break; // an unclosed fence holds no complete block
    if (iequals(t.substr(tag_begin, tag_end - tag_begin), "json"))
      blocks.push_back(t.substr(content, close - content));
    pos = close + fence.size();
  }
  return blocks;
}

struct brace_span {
  std::size_t begin, end; // positions of '{' and its matching '}'
  bool operator<(const brace_span& o) const {
    // Latest closing first; for the same close, outermost first.
    return end != o.end ? end > o.end : begin < o.begin;
  }
};

// One linear pass matching braces from `from`. Quotes only count inside a
// candidate (prose apostrophes and quotes outside objects are not JSON), and
// a newline ends a string (JSON strings cannot contain one), which limits the
// damage of a stray quote to one line. Returns the first '{' left unclosed, or
// npos.
std::size_t match_braces(std::string_view t, std::size_t from, std::set<brace_span>& spans) {
  std::vector<std::size_t> open;
  bool in_string = false, escaped = false;
  for (std::size_t i = from; i < t.size(); ++i) {
    char c = t[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"' || c == '\n')
        in_string = false;
      continue;
    }
    if (c == '{') {
      open.push_back(i);
    } else if (c == '}') {
      if (!open.empty()) {
        spans.insert({open.back(), i});
        open.pop_back();
      }
    } else if (c == '"' && !open.empty()) {
      in_string = true;
    }
  }
  return open.empty() ? std::string_view::npos : open.front();
}

extracted_output last_balanced_object(std::string_view t) {
  std::set<brace_span> spans;
  std::size_t unclosed = match_braces(t, 0, spans);
  for (int i = 0; i < max_brace_rescans && unclosed != std::string_view::npos; ++i)
    unclosed = match_braces(t, unclosed + 1, spans);
  std::size_t budget = parse_budget_factor * t.size();
  for (const auto& s : spans) {
    std::size_t len = s.end - s.begin + 1;
    if (len > budget) break;
    budget -= len;
    auto c = parse_candidate(t.substr(s.begin, len));
    if (c.object || c.refused) return {std::move(c.object), std::move(c.refused)};
  }
  return {};
}

std::string ms_text(std::chrono::milliseconds ms) {
  return std::to_string(ms.count()) + " ms";
}

} // namespace

std::optional<json> parse_heartbeat_line(std::string_view line) {
  std::string_view payload;
  if (!is_marker(line, &payload)) return std::nullopt;
  if (payload.empty()) return json(nullptr);
  util::json_parse_error err;
  auto j = util::parse_json(payload, {util::max_heartbeat_depth, limits::max_heartbeat_bytes}, &err);
  if (j) return j;
  const bool too_large =
      err.what == util::json_problem::depth || err.what == util::json_problem::too_large;
  error e = util::to_error(err,
                           too_large ? errc::heartbeat_payload_too_large
                                     : errc::heartbeat_payload_not_json,
                           "heartbeat data");
  if (err.what == util::json_problem::syntax) e.message = "heartbeat payload is not valid JSON: " + err.message;
  constexpr std::size_t preview_bytes = 120;
  e.details["payload_preview"] = valid_utf8(payload.substr(0, preview_bytes));
  throw smithers_error(std::move(e));
}

extracted_output find_output(std::string_view text) {
  std::string_view whole = trim(text);
  if (whole.empty()) return {};
  // Stdout that is exactly one JSON value: an object is the output; any other
  // value (an array, a string...) means the command printed no object.
  util::json_parse_error err;
  if (auto j = util::parse_json(whole, {limits::max_output_depth}, &err))
    return {j->is_object() ? std::optional<json>(std::move(*j)) : std::nullopt, {}};
  if (err.what != util::json_problem::syntax)
    return {{}, util::to_error(err, errc::invalid_output, "output")};
  auto fences = json_fences(text);
  for (auto it = fences.rbegin(); it != fences.rend(); ++it) {
    auto c = parse_candidate(trim(*it));
    if (c.object || c.refused) return {std::move(c.object), std::move(c.refused)};
  }
  return last_balanced_object(text);
}

std::optional<json> extract_output(std::string_view text) {
  return find_output(text).output;
}

command_outcome run_command(const command_spec& spec, const heartbeat_sink& on_heartbeat) {
  command_outcome outcome;
  const json context = {
      {"run_id", spec.run_id},
      {"node_id", spec.node_id},
      {"iteration", spec.iteration},
      {"attempt", spec.attempt},
      {"input", spec.input},
      {"needs", spec.needs},
      {"last_heartbeat", spec.last_heartbeat},
  };

  util::subprocess_request req;
  req.argv = spec.argv;
  req.cwd = spec.cwd;
  req.cancel = spec.cancel;
  req.timeout = spec.timeout;
  req.kill_grace = spec.kill_grace;
  req.on_start = spec.on_start;
  req.max_stdout_bytes = spec.max_stdout_bytes;
  // Heartbeat lines are no part of the output, nor of what stdout may hold:
  // a long task that heartbeats on stdout never runs into the bound.
  req.drop_stdout_line = [](const std::string& line) { return is_marker(line); };
  // One line, so a shell script can `read -r ctx`.
  req.stdin_data = spec.stdin_data
                       ? *spec.stdin_data
                       : context.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  // The protocol variables win over the task's env; a SMITHERS_LAST_HEARTBEAT
  // inherited from an enclosing task must not leak into this one.
  req.extra_env = spec.env;
  req.extra_env["SMITHERS_RUN_ID"] = spec.run_id;
  req.extra_env["SMITHERS_NODE_ID"] = spec.node_id;
  req.extra_env["SMITHERS_ITERATION"] = std::to_string(spec.iteration);
  req.extra_env["SMITHERS_ATTEMPT"] = std::to_string(spec.attempt);
  // The checkpoint is always on stdin; in the environment only when it fits
  // in one environment string (Linux: 128 KiB): a larger one there would
  // keep every later attempt from starting.
  std::string last = spec.last_heartbeat.is_null()
                         ? std::string()
                         : spec.last_heartbeat.dump(-1, ' ', false, json::error_handler_t::replace);
  constexpr std::string_view last_name = "SMITHERS_LAST_HEARTBEAT";
  if (last.empty() || last_name.size() + 1 + last.size() + 1 > limits::max_arg_string_bytes) {
    req.extra_env.erase(std::string(last_name));
    req.remove_env.emplace_back(last_name);
  } else {
    req.extra_env[std::string(last_name)] = std::move(last);
  }

  // A bad heartbeat fails the attempt at once: `stop` ends the group.
  auto stop = std::make_shared<std::atomic<bool>>(false);
  req.stop = stop;
  std::optional<error> heartbeat_error;
  req.on_line = [&](const std::string& line, bool is_stderr) {
    if (heartbeat_error) return;
    // Protocol lines are no part of what the task printed.
    if (spec.on_output && !is_marker(line)) spec.on_output(line, is_stderr);
    std::optional<json> data;
    try {
      data = parse_heartbeat_line(line);
    } catch (const smithers_error& e) {
      heartbeat_error = e.err();
    }
    if (data && !data->is_null()) heartbeat_error = util::check_heartbeat_data(*data);
    if (heartbeat_error) {
      stop->store(true, std::memory_order_release);
      return;
    }
    if (!on_heartbeat) return;
    if (data)
      on_heartbeat(*data, true);
    else
      on_heartbeat(json(), false);
  };

  util::subprocess_result res = util::run_subprocess(req);

  outcome.out = std::move(res.out);
  outcome.err = std::move(res.err);
  auto fail = [&](const char* code, std::string message, json details = json::object()) {
    outcome.failure = error{code, std::move(message), std::move(details)};
    return outcome;
  };
  if (res.spawn_errno == E2BIG)
    return fail(errc::invalid_argument,
                valid_utf8(res.spawn_error) +
                    ": its arguments and environment together are larger than the system allows; "
                    "pass large values on stdin (the command receives input and needs as JSON)");
  if (!res.spawn_error.empty()) return fail(errc::task_failed, valid_utf8(res.spawn_error));
  if (heartbeat_error) {
    outcome.failure = std::move(heartbeat_error);
    return outcome;
  }
  const std::string stderr_tail = last_lines(outcome.err, tail_lines);
  if (res.stdout_overflow)
    return fail(errc::invalid_output,
                spec.what + " printed more than " + std::to_string(spec.max_stdout_bytes) +
                    " bytes on stdout (4 times the output limit) and was stopped: print the "
                    "output object on stdout and anything else on stderr, or raise the output "
                    "limit (--max-output-bytes)",
                {{"limit", spec.max_stdout_bytes}, {"stderr_tail", stderr_tail}});
  if (res.cancelled) {
    outcome.cancelled = true;
    return fail(errc::task_aborted, spec.what + " was cancelled");
  }
  if (res.timed_out) {
    outcome.timed_out = true;
    return fail(errc::task_timeout, spec.what + " timed out after " + ms_text(*spec.timeout),
                {{"timeout_ms", spec.timeout->count()}, {"stderr_tail", stderr_tail}});
  }
  if (!res.exited && res.term_signal == 0) // reaped elsewhere (SIGCHLD ignored?)
    return fail(errc::task_failed, spec.what + " ended with an unknown status");
  if (!res.exited)
    return fail(errc::task_failed,
                spec.what + " was killed by signal " + std::to_string(res.term_signal) + " (" +
                    signal_name(res.term_signal) + ")",
                {{"signal", res.term_signal}, {"stderr_tail", stderr_tail}});
  if (res.exit_code != 0)
    return fail(errc::task_failed, spec.what + " exited with code " + std::to_string(res.exit_code),
                {{"exit_code", res.exit_code}, {"stderr_tail", stderr_tail}});

  if (!spec.find_output) return outcome;
  const std::string& out = outcome.out; // heartbeat lines already left out
  auto found = find_output(out);
  if (found.refused) {
    outcome.failure = std::move(found.refused);
    return outcome;
  }
  outcome.output = std::move(found.output);
  if (!outcome.output)
    return fail(errc::task_failed,
                util::is_valid_utf8(out)
                    ? "command printed no JSON object on stdout"
                    : "command printed no JSON object on stdout (which is not valid UTF-8, as "
                      "JSON text must be)",
                {{"exit_code", 0},
                 {"stdout_tail", last_lines(out, tail_lines)},
                 {"stderr_tail", stderr_tail}});
  return outcome;
}

} // namespace smithers::executors
