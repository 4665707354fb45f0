// Fuzz target `input_bounds`: the bounded JSON parser (util/json_parse.hpp)
// and the bounds on parsed values (util/json_bounds.hpp). The first input
// byte picks the depth limit (0..63, or one of the engine's limits), the
// second the size limit (unbounded, or 1..255 bytes); the rest is the text.
//
// Oracle: no crash, only smithers_error escapes;
// - a refusal: a byte offset within the text, a path and message of valid
//   UTF-8, too_large only when the text is over the size limit, an error
//   that serializes;
// - a value: no deeper than the limit (check_depth), valid UTF-8 throughout
//   (dump() does not throw), the same value as nlohmann's own parser gives
//   the same text, and dump() parses back to an equal value;
// - nlohmann accepting a text without a NUL that we call a syntax error is
//   a finding (our parser is nlohmann's with bounds: it may refuse only for
//   depth, duplicate keys, size and non-finite numbers);
// - check_input_bounds, check_signal_payload, check_heartbeat_data,
//   check_output_bounds: an error of the documented code that serializes;
//   a value they pass is within the bounds they promise.
#include "fuzz_support.hpp"

#include "executors/command.hpp"
#include "util/json_parse.hpp"

#include <smithers/limits.hpp>

using namespace smithers;

namespace {

std::size_t depth_limit(std::uint8_t b) {
  switch (b >> 6) {
  case 0:
    return b & 63;
  case 1:
    return limits::max_input_depth;
  case 2:
    return limits::max_output_depth;
  default:
    return limits::max_workflow_depth;
  }
}

void check_code(const std::optional<error>& e, std::initializer_list<const char*> codes,
                const char* what) {
  if (!e) return;
  bool ok = false;
  for (const char* c : codes)
    ok = ok || e->code == c;
  fuzz::require(ok, std::string{what} + ": an unexpected code", e->code);
  fuzz::check_error(*e);
}

// Reference for check_input_bounds on a parsed value (valid UTF-8, finite
// numbers): containers at most max_input_depth deep, arrays at most
// max_input_array_items long, strings and keys at most
// max_input_string_bytes. Recursion is fine: parsed values are bounded.
bool input_shape_ok(const json& v, std::size_t depth) {
  if (v.is_string())
    return v.get_ref<const std::string&>().size() <= limits::max_input_string_bytes;
  if (!v.is_structured()) return true;
  if (depth + 1 > limits::max_input_depth) return false;
  if (v.is_array() && v.size() > limits::max_input_array_items) return false;
  if (v.is_object()) {
    for (const auto& [k, x] : v.items())
      if (k.size() > limits::max_input_string_bytes || !input_shape_ok(x, depth + 1)) return false;
    return true;
  }
  for (const auto& x : v)
    if (!input_shape_ok(x, depth + 1)) return false;
  return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t max_depth = depth_limit(data[0]);
  const std::size_t max_bytes = data[1];
  const auto text = fuzz::as_text(data + 2, size - 2);

  // The raw text as bytes: valid_utf8 and is_valid_utf8 agree.
  auto clean = executors::valid_utf8(text);
  fuzz::require(util::is_valid_utf8(clean), "valid_utf8 made invalid UTF-8");
  fuzz::require(util::is_valid_utf8(text) == (clean == text),
                "valid_utf8 and is_valid_utf8 disagree");

  util::json_parse_error err;
  auto v = util::parse_json(text, {max_depth, max_bytes}, &err);
  if (!v) {
    fuzz::require(err.byte <= text.size(), "error byte beyond the text");
    fuzz::require(util::is_valid_utf8(err.path) && util::is_valid_utf8(err.message),
                  "error text is not valid UTF-8", err.message);
    fuzz::require(!err.path.empty() && err.path[0] == '$', "error path does not start with $",
                  err.path);
    fuzz::require((err.what == util::json_problem::too_large) ==
                      (max_bytes != 0 && text.size() > max_bytes),
                  "too_large disagrees with the size", err.message);
    fuzz::check_error(util::to_error(err, errc::invalid_input, "input"));
    if (err.what == util::json_problem::syntax && text.find('\0') == std::string_view::npos) {
      auto theirs = json::parse(text.begin(), text.end(), nullptr, false);
      if (!theirs.is_discarded())
        fuzz::finding("nlohmann parses a text we call a syntax error: " + err.message, text);
    }
    return 0;
  }
  fuzz::require(!util::check_depth(*v, max_depth, errc::invalid_input, "input"),
                "a parsed value deeper than the limit");
  const std::string dumped = fuzz::dump_strict(*v, "a parsed value");
  auto theirs = json::parse(text.begin(), text.end(), nullptr, false);
  fuzz::require(!theirs.is_discarded(), "nlohmann refuses a text we parsed", text);
  fuzz::require(theirs == *v, "nlohmann parses the text to another value", dumped);
  auto again = util::parse_json(dumped, {max_depth}, nullptr);
  fuzz::require(again && *again == *v, "dump() does not parse back to the value", dumped);

  fuzz::guarded("bounds", [&] {
    auto in = util::check_input_bounds(*v);
    check_code(in, {errc::invalid_input}, "check_input_bounds");
    const bool input_ok =
        v->is_object() && dumped.size() <= limits::max_input_bytes && input_shape_ok(*v, 0);
    fuzz::require(!in == input_ok,
                  in ? "check_input_bounds refused an input within the bounds: " + in->message
                     : std::string{"check_input_bounds passed an input beyond the bounds"},
                  dumped);
    auto sig = util::check_signal_payload(*v);
    check_code(sig, {errc::invalid_input}, "check_signal_payload");
    fuzz::require(!sig == (dumped.size() <= limits::max_input_bytes && input_shape_ok(*v, 0)),
                  "check_signal_payload disagrees with the bounds", dumped);
    // Parsed values are at most 128 deep: only the size can fail these.
    auto hb = util::check_heartbeat_data(*v);
    check_code(hb, {errc::heartbeat_payload_too_large, errc::heartbeat_payload_not_json},
               "check_heartbeat_data");
    fuzz::require(!hb == (dumped.size() <= limits::max_heartbeat_bytes),
                  "check_heartbeat_data disagrees with the size");
    for (std::size_t max :
         {std::size_t{0}, std::size_t{16}, std::size_t{300}, limits::default_max_output_bytes}) {
      auto out = util::check_output_bounds(*v, max);
      check_code(out, {errc::invalid_output}, "check_output_bounds");
      fuzz::require(!out == (dumped.size() <= max), "check_output_bounds disagrees with the size",
                    dumped);
    }
    // Paths of every key (cut at a character boundary).
    if (v->is_object())
      for (const auto& [k, x] : v->items()) {
        std::string path = "$";
        util::append_path_key(path, k);
        fuzz::require(util::is_valid_utf8(path), "append_path_key made invalid UTF-8", path);
      }
    if (v->is_string()) {
      const auto& s = v->get_ref<const std::string&>();
      fuzz::require(util::is_valid_utf8(s), "a parsed string is not valid UTF-8");
      fuzz::require(executors::valid_utf8(s) == s, "valid_utf8 changed valid text");
    }
  });
  return 0;
}
