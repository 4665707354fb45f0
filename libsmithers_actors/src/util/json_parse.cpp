#include "util/json_parse.hpp"

#include "util/json_bounds.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>
#include <vector>

namespace smithers::util {

namespace {

constexpr std::size_t max_quoted_bytes = 64;

// A char pointer that publishes how far the lexer has read: SAX events carry
// no position in nlohmann 3.11.2, and depth and duplicate-key errors need one.
struct tracked_iter {
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  const char* p;
  const char** read; // end of what the lexer has consumed

  reference operator*() const { return *p; }
  tracked_iter& operator++() {
    *read = ++p;
    return *this;
  }
  tracked_iter operator++(int) {
    tracked_iter old = *this;
    ++*this;
    return old;
  }
  bool operator==(const tracked_iter& o) const { return p == o.p; }
  bool operator!=(const tracked_iter& o) const { return p != o.p; }
};

// `s` JSON-quoted, cut after max_quoted_bytes (at a character boundary) with
// "..." before the closing quote, as append_path_key shows long keys.
std::string quote_cut(std::string_view s) {
  std::size_t n = s.size();
  if (n > max_quoted_bytes) {
    n = max_quoted_bytes;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)
      --n;
  }
  std::string q =
      json(std::string(s.substr(0, n))).dump(-1, ' ', false, json::error_handler_t::replace);
  if (n < s.size()) q.insert(q.size() - 1, "...");
  return q;
}

std::string size_str(std::size_t n) {
  return std::to_string(n);
}

// "at byte 4 (line 1, column 5)"; lines end at '\n', columns count bytes.
std::string where(std::string_view text, std::size_t byte) {
  std::size_t line = 1, line_start = 0;
  for (std::size_t i = 0; i < byte && i < text.size(); ++i)
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  return "at byte " + size_str(byte) + " (line " + size_str(line) + ", column " +
         size_str(byte - line_start + 1) + ")";
}

// nlohmann's "[json.exception.parse_error.101] parse error at line 1, column
// 5: syntax error while parsing array - unexpected end of input; expected ']'"
// becomes "syntax error while parsing array at byte 4 (line 1, column 5):
// unexpected end of input; expected ']'". "; last read: '<token>'" is dropped:
// it echoes the text (a whole long string, or bytes that are not UTF-8).
std::string syntax_message(std::string_view what, const std::string& token, std::string_view text,
                           std::size_t byte) {
  std::string_view m = what;
  if (auto b = m.find("] "); b != std::string_view::npos)
    if (auto c = m.find(": ", b); c != std::string_view::npos) m.remove_prefix(c + 2);
  std::string head = "syntax error", tail(m);
  if (auto dash = m.find(" - "); dash != std::string_view::npos) {
    head = std::string(m.substr(0, dash));
    tail = std::string(m.substr(dash + 3));
  }
  std::string last_read = "; last read: '" + token + "'";
  if (auto lr = tail.find(last_read); lr != std::string::npos) tail.erase(lr, last_read.size());
  // Known to be ASCII; make sure nothing else reaches an error message.
  for (char& c : tail)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F) c = '?';
  return head + " " + where(text, byte) + ": " + tail;
}

// Builds the DOM from SAX events like nlohmann's json_sax_dom_parser, but
// refuses (returns false, so the parse stops) a container beyond the depth
// limit, a repeated key and a non-finite number. Not virtual: sax_parse is a
// template, so the calls inline.
class bounded_dom {
public:
  bounded_dom(std::string_view text, const json_parse_limits& lim, const char** read)
      : text_(text), lim_(lim), read_(read) {}

  bool null() { return put(nullptr); }
  bool boolean(bool v) { return put(v); }
  bool number_integer(json::number_integer_t v) { return put(v); }
  bool number_unsigned(json::number_unsigned_t v) { return put(v); }
  bool number_float(json::number_float_t v, const json::string_t& raw) {
    // 3.11.2 reports overflow through parse_error (406) before this; kept so
    // that another version cannot slip an infinity through. The lexer may
    // have read one byte past the number, hence rfind.
    if (!std::isfinite(v)) return fail_number(raw, text_.rfind(raw, consumed() - raw.size()));
    return put(v);
  }
  // The lexer clears its buffer before the next token: take the string.
  bool string(json::string_t& v) { return put(std::move(v)); }
  bool binary(json::binary_t&) { return false; } // not produced by JSON text

  bool start_object(std::size_t) { return open(json::value_t::object); }
  bool start_array(std::size_t) { return open(json::value_t::array); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

  bool key(json::string_t& k) {
    frame& f = stack_.back();
    auto [it, inserted] = f.node->get_ref<json::object_t&>().try_emplace(std::move(k));
    if (!inserted) {
      // try_emplace leaves `k` alone when the key exists
      error_.what = json_problem::duplicate_key;
      error_.path = path(false);
      append_path_key(error_.path, k);
      error_.message = "duplicate key " + quote_cut(k);
      error_.byte = opening_quote(consumed() - 1);
      return false;
    }
    f.key = &it->first;
    f.slot = &it->second;
    return true;
  }

  bool parse_error(std::size_t pos, const std::string& token,
                   const nlohmann::detail::exception& ex) {
    // pos counts the characters read, end of input included.
    std::size_t end = std::min(pos, text_.size());
    if (ex.id == 406) // out_of_range: number overflow; the number ends at pos
      return fail_number(token, end - std::min(end, token.size()));
    std::size_t at = pos > 0 ? std::min(pos - 1, text_.size()) : 0;
    error_.what = json_problem::syntax;
    error_.path = path(false);
    error_.byte = at;
    error_.message = syntax_message(ex.what(), token, text_, at);
    return false;
  }

  json& root() { return root_; }
  json_parse_error& error() { return error_; }

private:
  struct frame {
    json* node;
    // Objects: the member whose value is being read, null between members.
    const std::string* key = nullptr;
    json* slot = nullptr;
  };

  std::size_t consumed() const { return static_cast<std::size_t>(*read_ - text_.data()); }

  // The text before `close` (a key's closing quote) is a valid key, so the
  // opening quote is the nearest '"' before it not escaped by a backslash.
  std::size_t opening_quote(std::size_t close) const {
    for (std::size_t i = close; i-- > 0;) {
      if (text_[i] != '"') continue;
      std::size_t backslashes = 0;
      while (backslashes < i && text_[i - 1 - backslashes] == '\\')
        ++backslashes;
      if (backslashes % 2 == 0) return i;
    }
    return 0;
  }

  // The path of the open containers; `place` adds the next array index, for
  // a value being added to the innermost array.
  std::string path(bool place) const {
    std::string p = "$";
    for (std::size_t i = 0; i < stack_.size(); ++i) {
      const frame& f = stack_[i];
      bool last = i + 1 == stack_.size();
      if (f.node->is_object()) {
        if (f.key) append_path_key(p, *f.key);
      } else if (!last) {
        append_path_index(p, f.node->size() - 1);
      } else if (place) {
        append_path_index(p, f.node->size());
      }
    }
    return p;
  }

  template <class V> json* place(V&& v) {
    if (stack_.empty()) {
      root_ = json(std::forward<V>(v));
      return &root_;
    }
    frame& f = stack_.back();
    if (f.slot) {
      *f.slot = json(std::forward<V>(v));
      return f.slot;
    }
    auto& a = f.node->get_ref<json::array_t&>();
    a.emplace_back(std::forward<V>(v));
    return &a.back();
  }

  template <class V> bool put(V&& v) {
    place(std::forward<V>(v));
    member_done();
    return true;
  }

  void member_done() {
    if (stack_.empty()) return;
    stack_.back().key = nullptr;
    stack_.back().slot = nullptr;
  }

  bool open(json::value_t type) {
    std::size_t depth = stack_.size() + 1;
    if (depth > lim_.max_depth) {
      error_.what = json_problem::depth;
      error_.path = path(true);
      error_.limit = lim_.max_depth;
      error_.actual = depth;
      error_.byte = consumed() - 1; // the lexer stops right after the bracket
      error_.message =
          "nesting depth " + size_str(depth) + " exceeds the limit of " + size_str(lim_.max_depth);
      return false;
    }
    json* node = place(type);
    stack_.push_back(frame{node});
    return true;
  }

  bool close() {
    stack_.pop_back();
    member_done();
    return true;
  }

  bool fail_number(std::string_view raw, std::size_t byte) {
    constexpr std::size_t shown = 40;
    error_.what = json_problem::not_finite;
    error_.path = path(true);
    error_.byte = std::min(byte, text_.size());
    error_.message =
        "number " +
        (raw.size() > shown ? std::string(raw.substr(0, shown)) + "..." : std::string(raw)) +
        " is out of range";
    return false;
  }

  std::string_view text_;
  const json_parse_limits& lim_;
  const char** read_;
  std::vector<frame> stack_;
  json root_;
  json_parse_error error_;
};

} // namespace

std::optional<json> parse_json(std::string_view text, const json_parse_limits& lim,
                               json_parse_error* err) {
  if (lim.max_bytes != 0 && text.size() > lim.max_bytes) {
    if (err) {
      *err = json_parse_error{};
      err->what = json_problem::too_large;
      err->limit = lim.max_bytes;
      err->actual = text.size();
      err->message = "text of " + size_str(text.size()) + " bytes exceeds the limit of " +
                     size_str(lim.max_bytes) + " bytes";
    }
    return std::nullopt;
  }
  // nlohmann's lexer takes a NUL byte for the end of the text, so "[1]\0junk"
  // would parse; no JSON text has one (strings must escape it).
  if (auto nul = text.find('\0'); nul != std::string_view::npos) {
    if (err) {
      *err = json_parse_error{};
      err->byte = nul;
      err->message = "syntax error " + where(text, nul) + ": unexpected NUL byte";
    }
    return std::nullopt;
  }
  const char* read = text.data();
  bounded_dom dom(text, lim, &read);
  tracked_iter first{text.data(), &read}, last{text.data() + text.size(), &read};
  if (json::sax_parse(first, last, &dom)) return std::move(dom.root());
  if (err) *err = std::move(dom.error());
  return std::nullopt;
}

error to_error(const json_parse_error& e, const char* code, std::string_view what) {
  json details = {{"path", e.path}};
  if (e.what == json_problem::depth || e.what == json_problem::too_large) {
    details["limit"] = e.limit;
    details["actual"] = e.actual;
  }
  if (e.what == json_problem::syntax) details["byte"] = e.byte;
  return error{code, std::string(what) + " " + e.path + ": " + e.message, std::move(details)};
}

} // namespace smithers::util
