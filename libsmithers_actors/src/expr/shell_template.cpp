#include "expr/shell_template.hpp"

#include <smithers/errors.hpp>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <string>
#include <unordered_map>
#include <utility>

namespace smithers::spec {

namespace {

// Where a template stands in a script, and so what it becomes.
enum class place {
  word,          // unquoted: "${V}"
  double_quoted, // "…": ${V}
  single_quoted, // '…': '"${V}"'
  heredoc,       // unquoted here-document body: ${V}
  comment,       // left as written
  // refused:
  parameter,       // ${…}
  arithmetic,      // $((…))
  arithmetic_cmd,  // ((…))
  arithmetic_old,  // $[…]
  subscript,       // a[…]=
  let_cmd,         // let …
  test_arith,      // [[ … -eq … ]]
  declare_integer, // declare -i …
  name_arg,        // unset …, test -v …, declare -n …
  computed_cmd,    // {let,x} …, l?t …
  ansi_c,          // $'…'
  quoted_heredoc,  // body of <<'EOF'
  heredoc_delim,   // <<{{x}}
  after_dollar,    // ${{x}}
  after_backslash, // \{{x}}
};

bool refused(place p) {
  return p >= place::parameter;
}

std::string refusal(place p, const std::string& t) {
  std::string head = "template \"" + t + "\" ";
  switch (p) {
  case place::parameter:
    return head +
           "is inside a ${...} parameter expansion, where bash can run a value as code (array "
           "subscripts): assign it to a variable first, e.g. v=" +
           t + "; echo \"${x:-$v}\"";
  case place::arithmetic:
    return head +
           "is inside an arithmetic expansion $((...)), where bash runs a value as code "
           "(a[$(cmd)]): assign it to a variable and check that it is a number first, e.g. n=" +
           t + "; case $n in ''|*[!0-9]*) exit 2;; esac; echo $((n + 1))";
  case place::arithmetic_cmd:
    return head +
           "is inside an arithmetic command ((...)), where bash runs a value as code "
           "(a[$(cmd)]): assign it to a variable and check that it is a number first, e.g. n=" +
           t +
           "; case $n in ''|*[!0-9]*) exit 2;; esac; ((n > 1)) (for nested subshells write "
           "\"( (\")";
  case place::arithmetic_old:
    return head +
           "is inside a $[...] arithmetic expansion, where bash runs a value as code "
           "(a[$(cmd)]): assign it to a variable and check that it is a number first, e.g. n=" +
           t + "; case $n in ''|*[!0-9]*) exit 2;; esac; echo $((n + 1))";
  case place::subscript:
    return head +
           "is inside an array subscript (name[...]), where bash runs a value as code "
           "(a[$(cmd)]): assign it to a variable and check that it is a number first, e.g. i=" +
           t + "; case $i in ''|*[!0-9]*) exit 2;; esac; a[i]=x";
  case place::let_cmd:
    return head +
           "is in a \"let\" command, where bash evaluates a value as code (a[$(cmd)]): "
           "assign it to a variable and check that it is a number first, e.g. n=" +
           t + "; case $n in ''|*[!0-9]*) exit 2;; esac; let \"x = n + 1\"";
  case place::test_arith:
    return head +
           "is in a [[ ... ]] test with an arithmetic comparison (-eq, -lt, ...) or -v, where "
           "bash evaluates a value as code (a[$(cmd)]): assign it to a variable and check that "
           "it is a number first, e.g. n=" +
           t + "; case $n in ''|*[!0-9]*) exit 2;; esac; [[ $n -gt 0 ]]";
  case place::declare_integer:
    return head +
           "is in a declare, typeset, local, readonly or export command with -i, where bash "
           "evaluates a value as code (a[$(cmd)]): assign it to a variable and check that it "
           "is a number first, e.g. n=" +
           t + "; case $n in ''|*[!0-9]*) exit 2;; esac; declare -i x=$n";
  case place::name_arg:
    return head +
           "names a variable (unset, test -v, declare -n), and bash evaluates a name with a "
           "subscript as code (a[$(cmd)]): check the name first, e.g. v=" +
           t + "; case $v in ''|[0-9]*|*[!A-Za-z0-9_]*) exit 2;; esac; unset \"$v\"";
  case place::computed_cmd:
    return head +
           "is in a command whose name bash makes from a brace expansion or a pattern ({a,b}, *, "
           "?, [...]), which could make it \"let\" or \"declare -i\", where bash evaluates a "
           "value as code (a[$(cmd)]): write the command name as plain text";
  case place::ansi_c:
    return head + "is inside a $'...' string: close the string before it, e.g. $'a\\n'" + t;
  case place::quoted_heredoc:
    return head +
           "is in the body of a quoted here-document (<<'EOF'), which is literal text: a value "
           "could end the document and run what follows; use an unquoted delimiter (<<EOF, "
           "escaping $, ` and \\ of the body as \\$, \\` and \\\\), where the template becomes "
           "a variable reference";
  case place::heredoc_delim:
    return head + "is in a here-document delimiter, which must be literal text";
  case place::after_dollar:
    return head +
           "follows a \"$\": a value is inserted as text, never as a variable name; remove the "
           "\"$\" (write \"\\$\" for a literal dollar sign)";
  case place::after_backslash:
    return head + "follows a backslash, which would escape the first character of what it becomes: "
                  "remove the backslash";
  default:
    return head + "cannot be placed here";
  }
}

// The script as the lexer sees it: characters, and each template as one
// opaque unit (so nothing inside "{{…}}" is ever read as shell syntax).
struct unit {
  char c = 0;
  int tmpl = -1; // >= 0: index of the template
};

// Nesting deeper than this is refused rather than followed.
constexpr int max_depth = 100;

struct too_deep {};

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

bool is_operator_char(char c) {
  return c == ';' || c == '&' || c == '|' || c == '(' || c == ')' || c == '<' || c == '>';
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool is_special_param(char c) {
  return c != 0 && std::strchr("@*#?-$!", c) != nullptr;
}

// A word of a simple command, as far as a reader can know it.
struct word_info {
  std::string raw;         // as written, when plain text (line continuations removed); else ""
  std::string text;        // after quote removal, when nothing in it expands; else ""
  bool assignment = false; // NAME=…, NAME+=…, NAME[…]=…
  bool brace = false;      // an unquoted brace expansion: bash makes it several words
  bool glob = false;       // an unquoted pattern (* ? [...]): a file name could replace it
  bool slash = false;      // an unquoted "/": what a pattern makes is a path, never a builtin
};

bool is_declare(const std::string& name) {
  return name == "declare" || name == "typeset" || name == "local" || name == "readonly" ||
         name == "export";
}

// Bash builtins that evaluate their arguments as code: the templates of
// such a simple command are refused. Builtins are known by their words
// after quote removal ("let", 'let', \let): bash runs the builtin all the
// same; reserved words ([[) only as written.
place builtin_refusal(const std::vector<word_info>& words) {
  if (words.empty()) return place::word;
  if (words[0].raw == "[[") {
    for (std::size_t k = 1; k < words.size(); ++k)
      for (const char* op : {"-eq", "-ne", "-lt", "-le", "-gt", "-ge", "-v"})
        if (words[k].raw == op) return place::test_arith;
    return place::word;
  }
  // The command name: after assignments, and after `command` and
  // `builtin`, which run a builtin too.
  std::size_t n = 0;
  while (n < words.size()) {
    const std::string& w = words[n].text;
    if (words[n].assignment) {
      ++n;
    } else if (w == "command" || w == "builtin") {
      ++n;
      while (n < words.size() && (words[n].text == "-p" || words[n].text == "--"))
        ++n;
    } else {
      break;
    }
  }
  if (n == words.size()) return place::word;
  if (words[n].brace || (words[n].glob && !words[n].slash)) return place::computed_cmd;
  const std::string& name = words[n].text;
  auto has = [&](const char* op) {
    for (std::size_t k = n + 1; k < words.size(); ++k)
      if (words[k].text == op) return true;
    return false;
  };
  // A brace expansion among the arguments could make an option of a value.
  auto any_brace = [&] {
    for (std::size_t k = n + 1; k < words.size(); ++k)
      if (words[k].brace) return true;
    return false;
  };
  if (name == "let") return place::let_cmd;
  if (name == "unset") return place::name_arg;
  if (name == "[" || name == "test")
    return has("-v") || any_brace() ? place::name_arg : place::word;
  if (is_declare(name)) {
    bool nameref = false;
    for (std::size_t k = n + 1; k < words.size(); ++k) {
      const std::string& w = words[k].text;
      if (w.size() < 2 || w[0] != '-' || w[1] == '-') continue;
      if (w.find('i') != std::string::npos) return place::declare_integer;
      // -n makes a reference to the variable a value names
      if (w.find('n') != std::string::npos && name != "export" && name != "readonly")
        nameref = true;
    }
    if (nameref) return place::name_arg;
    if (any_brace()) return place::declare_integer;
  }
  return place::word;
}

// Words after which a command may follow (reserved words that open a
// command list).
bool keeps_command_position(const std::string& w) {
  static const char* const words[] = {"if",    "then", "else", "elif", "do",    "while",
                                      "until", "!",    "{",    "time", "coproc"};
  return std::find(std::begin(words), std::end(words), w) != std::end(words);
}

class lexer {
public:
  lexer(const std::vector<unit>& u, std::size_t begin, std::size_t end, std::vector<place>& places,
        std::vector<std::size_t>& log, int depth, place forced)
      : u_(u), i_(begin), end_(end), places_(places), log_(log), depth_(depth), forced_(forced) {}

  // A whole script (the -c argument, a backtick body).
  void top() { script(false); }

  // The body of an unquoted here-document: like "…" without quotes.
  void heredoc_body() {
    guard g(*this);
    while (i_ < end_) {
      if (tmpl(i_)) {
        put(i_++, place::heredoc);
      } else if (is(i_, '\\')) {
        backslash();
      } else if (is(i_, '$')) {
        dollar(true);
      } else if (is(i_, '`')) {
        backtick(false);
      } else {
        ++i_;
      }
    }
  }

private:
  struct guard {
    explicit guard(lexer& l) : l_(l) {
      if (++l_.depth_ > max_depth) throw too_deep{};
    }
    ~guard() { --l_.depth_; }
    lexer& l_;
  };

  // While set, every template is refused with this reason (inside ${…} or
  // $((…)) even a nested "…" or $(…) feeds what bash evaluates).
  struct force {
    force(lexer& l, place p) : l_(l), old_(l.forced_) {
      if (l_.forced_ == place::word) l_.forced_ = p;
    }
    ~force() { l_.forced_ = old_; }
    lexer& l_;
    place old_;
  };

  struct heredoc {
    std::string delim;
    bool quoted = false;
    bool strip_tabs = false;
  };

  bool tmpl(std::size_t k) const { return k < end_ && u_[k].tmpl >= 0; }
  bool is(std::size_t k, char c) const { return k < end_ && u_[k].tmpl < 0 && u_[k].c == c; }
  char ch(std::size_t k) const { return k < end_ && u_[k].tmpl < 0 ? u_[k].c : 0; }

  void put(std::size_t k, place p) {
    auto t = static_cast<std::size_t>(u_[k].tmpl);
    places_[t] = forced_ != place::word ? forced_ : p;
    log_.push_back(t);
  }

  // At a backslash: a template right after it is refused; otherwise the
  // pair is skipped (whatever it escapes has no meaning to the lexer).
  void backslash() {
    if (tmpl(i_ + 1)) {
      put(i_ + 1, place::after_backslash);
      i_ += 2;
    } else {
      i_ = std::min(i_ + 2, end_);
    }
  }

  // At "$". `dq`: inside "…" or a here-document body, where $'…' is not
  // special.
  void dollar(bool dq) {
    std::size_t k = i_ + 1;
    if (tmpl(k)) {
      put(k, place::after_dollar);
      i_ = k + 1;
      return;
    }
    char c = ch(k);
    if (c == '(') {
      if (is(k + 1, '(')) {
        i_ = k + 2;
        if (!arithmetic(place::arithmetic)) script(true); // it was $( (…) …)
      } else {
        i_ = k + 1;
        script(true);
      }
    } else if (c == '{') {
      i_ = k + 1;
      parameter();
    } else if (c == '[') {
      i_ = k + 1;
      brackets(place::arithmetic_old);
    } else if (c == '\'' && !dq) {
      i_ = k + 1;
      ansi_c();
    } else if (is_special_param(c) || (c >= '0' && c <= '9')) {
      i_ = k + 1; // $#, $$ ...: the second character is not syntax
    } else {
      i_ = k; // $name (the name is plain text), $"…" (a "…" string), or a literal $
    }
  }

  void single_quoted() {
    guard g(*this);
    ++i_;
    while (i_ < end_ && !is(i_, '\'')) {
      if (tmpl(i_)) put(i_, place::single_quoted);
      ++i_;
    }
    if (i_ < end_) ++i_;
  }

  void ansi_c() {
    guard g(*this);
    while (i_ < end_ && !is(i_, '\'')) {
      if (tmpl(i_)) {
        put(i_++, place::ansi_c);
      } else if (is(i_, '\\')) {
        i_ = std::min(i_ + 2, end_);
      } else {
        ++i_;
      }
    }
    if (i_ < end_) ++i_;
  }

  void double_quoted() {
    guard g(*this);
    ++i_;
    while (i_ < end_ && !is(i_, '"')) {
      if (tmpl(i_)) {
        put(i_++, place::double_quoted);
      } else if (is(i_, '\\')) {
        backslash();
      } else if (is(i_, '$')) {
        dollar(true);
      } else if (is(i_, '`')) {
        backtick(true);
      } else {
        ++i_;
      }
    }
    if (i_ < end_) ++i_;
  }

  // After "${", up to its "}" (the first one not quoted or nested: bash and
  // dash do not count braces).
  void parameter() {
    guard g(*this);
    force f(*this, place::parameter);
    while (i_ < end_ && !is(i_, '}')) {
      if (tmpl(i_)) {
        put(i_++, place::parameter);
      } else if (is(i_, '\\')) {
        backslash();
      } else if (is(i_, '\'')) {
        single_quoted(); // bash honours these quotes even inside "…"
      } else if (is(i_, '"')) {
        double_quoted();
      } else if (is(i_, '$')) {
        dollar(false);
      } else if (is(i_, '`')) {
        backtick(false);
      } else {
        ++i_;
      }
    }
    if (i_ < end_) ++i_;
  }

  // After "$((" or "((": up to the "))" that closes it. False when a ")"
  // closes the inner parenthesis alone: it was two nested parentheses
  // ("$( (a) b)" or "( (a) b)"), and the outer one is still open.
  bool arithmetic(place why) {
    guard g(*this);
    force f(*this, why);
    int depth = 0;
    while (i_ < end_) {
      if (tmpl(i_)) {
        put(i_++, why);
      } else if (is(i_, '(')) {
        ++depth;
        ++i_;
      } else if (is(i_, ')')) {
        if (depth > 0) {
          --depth;
          ++i_;
        } else if (is(i_ + 1, ')')) {
          i_ += 2;
          return true;
        } else {
          ++i_;
          return false;
        }
      } else if (is(i_, '\\')) {
        backslash();
      } else if (is(i_, '\'')) {
        single_quoted();
      } else if (is(i_, '"')) {
        double_quoted();
      } else if (is(i_, '$')) {
        dollar(false);
      } else if (is(i_, '`')) {
        backtick(false);
      } else {
        ++i_;
      }
    }
    return true;
  }

  // After "$[" (bash's old arithmetic) or the "[" of an array subscript
  // ("a[i]=x", "unset a[i]"): up to the matching "]". Bash evaluates both.
  void brackets(place why) {
    guard g(*this);
    force f(*this, why);
    int depth = 0;
    while (i_ < end_ && !is(i_, '\n')) {
      if (tmpl(i_)) {
        put(i_++, why);
      } else if (is(i_, '[')) {
        ++depth;
        ++i_;
      } else if (is(i_, ']')) {
        ++i_;
        if (depth-- == 0) return;
      } else if (is(i_, '\\')) {
        backslash();
      } else if (is(i_, '\'')) {
        single_quoted();
      } else if (is(i_, '"')) {
        double_quoted();
      } else if (is(i_, '$')) {
        dollar(false);
      } else if (is(i_, '`')) {
        backtick(false);
      } else {
        ++i_;
      }
    }
  }

  // What a reader knows of the word [b, e): its text as written when
  // `plain` (no quotes, expansions or templates), its text after quote
  // removal when nothing in it expands, and whether it is an assignment.
  // Line continuations are gone before bash reads words.
  word_info describe_word(std::size_t b, std::size_t e, bool plain) const {
    word_info wi;
    if (plain)
      for (std::size_t k = b; k < e; ++k) {
        if (is(k, '\\') && is(k + 1, '\n'))
          ++k;
        else
          wi.raw += ch(k);
      }
    std::size_t k = b;
    while (k < e && is_name_char(ch(k)) && !(k == b && ch(k) >= '0' && ch(k) <= '9'))
      ++k;
    wi.assignment = k > b && (is(k, '=') || is(k, '[') || (is(k, '+') && is(k + 1, '=')));
    if (!unquote(b, e, wi.text)) wi.text.clear();
    return wi;
  }

  // The text of [b, e) after quote removal; false when something in it
  // expands ($x, $(…), `…`, a template).
  bool unquote(std::size_t b, std::size_t e, std::string& out) const {
    auto escapable_in_dq = [](char c) { return c != 0 && std::strchr("$`\"\\\n", c); };
    std::size_t k = b;
    while (k < e) {
      if (tmpl(k)) return false;
      char c = ch(k);
      if (c == '\\') {
        if (tmpl(k + 1)) return false;
        if (k + 1 < e && !is(k + 1, '\n')) out += ch(k + 1);
        k += 2;
      } else if (c == '\'') {
        for (++k; k < e && !is(k, '\''); ++k) {
          if (tmpl(k)) return false;
          out += ch(k);
        }
        ++k;
      } else if (c == '"' || (c == '$' && is(k + 1, '"'))) { // $"…": translated, as "…" here
        k += c == '$' ? 2 : 1;
        for (; k < e && !is(k, '"'); ++k) {
          if (tmpl(k) || is(k, '$') || is(k, '`')) return false;
          if (is(k, '\\') && escapable_in_dq(ch(k + 1))) {
            ++k;
            if (is(k, '\n')) continue;
          }
          out += ch(k);
        }
        ++k;
      } else if (c == '$' && is(k + 1, '\'')) {
        k = ansi_c_text(k + 2, e, out);
        if (k == 0) return false;
      } else if (c == '$' || c == '`') {
        return false;
      } else {
        out += c;
        ++k;
      }
    }
    return true;
  }

  // The text of bash's $'…' from its first character to e, decoded; the
  // position after its closing quote, or 0 when a template is in it. A
  // character beyond ASCII becomes 0x80 (no builtin's name has one).
  std::size_t ansi_c_text(std::size_t k, std::size_t e, std::string& out) const {
    auto digits = [&](std::size_t& j, int base, int max) {
      unsigned long v = 0;
      int n = 0;
      for (; n < max && j < e && !tmpl(j); ++n, ++j) {
        char d = ch(j);
        int x = d >= '0' && d <= '9'   ? d - '0'
                : d >= 'a' && d <= 'f' ? d - 'a' + 10
                : d >= 'A' && d <= 'F' ? d - 'A' + 10
                                       : 99;
        if (x >= base) break;
        v = v * base + x;
      }
      return n == 0 ? -1L : static_cast<long>(v);
    };
    while (k < e && !is(k, '\'')) {
      if (tmpl(k)) return 0;
      if (!is(k, '\\') || k + 1 >= e) {
        out += ch(k++);
        continue;
      }
      if (tmpl(k + 1)) return 0;
      char c = ch(k + 1);
      k += 2;
      // \a \b \e \E \f \n \r \t \v \\ \' \" \?: one character each
      static constexpr std::string_view from = "abeEfnrtv\\'\"?";
      static constexpr std::string_view to = "\a\b\x1b\x1b\f\n\r\t\v\\'\"?";
      long v = -1;
      if (auto at = from.find(c); at != std::string_view::npos)
        v = to[at];
      else if (c == 'x')
        v = digits(k, 16, 2);
      else if (c == 'u')
        v = digits(k, 16, 4);
      else if (c == 'U')
        v = digits(k, 16, 8);
      else if (c == 'c' && k < e && !tmpl(k))
        v = ch(k++) & 0x1f;
      else if (c >= '0' && c <= '7')
        v = digits(--k, 8, 3);
      if (v < 0) { // not an escape: kept as written
        out += '\\';
        out += c;
      } else {
        out += v < 0x80 ? static_cast<char>(v) : '\x80';
      }
    }
    return k < e ? k + 1 : e;
  }

  // At the start of a word: the length of "name[" when the word opens with
  // an array subscript ("a[", or "[" in "a=([k]=v)"), else 0. "[ " and "[["
  // are the test commands.
  std::size_t subscript_start() const {
    std::size_t k = i_;
    while (k < end_ && u_[k].tmpl < 0 && is_name_char(u_[k].c) &&
           !(k == i_ && u_[k].c >= '0' && u_[k].c <= '9'))
      ++k;
    if (!is(k, '[')) return 0;
    if (k == i_) {
      char next = ch(k + 1);
      if (tmpl(k + 1)) return 1;
      if (next == 0 || is_blank(next) || next == '\n' || next == '[' || next == ']') return 0;
    }
    return k + 1 - i_;
  }

  // At "`": the body runs to the next unescaped "`"; the shell removes the
  // backslash before $ ` \ (and " inside "…") and parses what is left as a
  // script of its own. What a template becomes has no backslash or "`", so
  // it reads the same at every level.
  void backtick(bool dq) {
    guard g(*this);
    std::size_t k = i_ + 1;
    while (k < end_ && !is(k, '`'))
      k += is(k, '\\') ? 2 : 1;
    k = std::min(k, end_);
    std::vector<unit> body;
    for (std::size_t j = i_ + 1; j < k; ++j) {
      char next = ch(j + 1);
      if (is(j, '\\') && j + 1 < k &&
          (next == '$' || next == '`' || next == '\\' || (dq && next == '"')))
        ++j;
      body.push_back(u_[j]);
    }
    i_ = k < end_ ? k + 1 : end_;
    lexer sub(body, 0, body.size(), places_, log_, depth_, forced_);
    sub.top();
  }

  // At "<<" or "<<-": the delimiter word; the body is read at the next
  // newline.
  void heredoc_operator() {
    i_ += 2;
    heredoc h;
    if (is(i_, '-')) {
      h.strip_tabs = true;
      ++i_;
    }
    while (i_ < end_ && is_blank(ch(i_)))
      ++i_;
    bool any = false;
    while (i_ < end_) {
      if (tmpl(i_)) {
        put(i_++, place::heredoc_delim);
        h.delim += '\x01'; // never matches a line
        any = true;
        continue;
      }
      char c = ch(i_);
      if (is_blank(c) || c == '\n' || is_operator_char(c)) break;
      any = true;
      if (c == '\\') {
        h.quoted = true;
        if (tmpl(i_ + 1)) put(i_ + 1, place::heredoc_delim);
        if (i_ + 1 < end_) h.delim += ch(i_ + 1);
        i_ = std::min(i_ + 2, end_);
      } else if (c == '\'' || c == '"') {
        h.quoted = true;
        ++i_;
        while (i_ < end_ && !is(i_, c)) {
          if (tmpl(i_)) {
            put(i_, place::heredoc_delim);
            h.delim += '\x01';
          } else if (c == '"' && is(i_, '\\') && ch(i_ + 1) != 0 &&
                     std::strchr("\"$`\\", ch(i_ + 1))) {
            ++i_;
            h.delim += ch(i_);
          } else {
            h.delim += ch(i_);
          }
          ++i_;
        }
        if (i_ < end_) ++i_;
      } else {
        h.delim += c;
        ++i_;
      }
    }
    if (any) pending_.push_back(std::move(h));
  }

  // After a newline: the bodies of the here-documents opened on that line.
  void read_heredocs() {
    auto docs = std::move(pending_);
    pending_.clear();
    for (const auto& h : docs) {
      std::size_t body_begin = i_, body_end = end_;
      while (i_ < end_) {
        std::size_t line_begin = i_;
        std::string line;
        bool has_template = false;
        while (i_ < end_ && !is(i_, '\n')) {
          if (tmpl(i_)) {
            has_template = true;
            ++i_;
          } else if (!h.quoted && is(i_, '\\') && i_ + 1 < end_) {
            // Unquoted: backslash-newline joins lines before the delimiter
            // is looked for.
            if (!is(i_ + 1, '\n')) {
              line += '\\';
              if (tmpl(i_ + 1))
                has_template = true;
              else
                line += ch(i_ + 1);
            }
            i_ += 2;
          } else {
            line += ch(i_++);
          }
        }
        if (i_ < end_) ++i_; // the newline
        std::size_t tabs = 0;
        if (h.strip_tabs)
          while (tabs < line.size() && line[tabs] == '\t')
            ++tabs;
        if (!has_template && line.compare(tabs, std::string::npos, h.delim) == 0) {
          body_end = line_begin;
          break;
        }
      }
      if (h.quoted) {
        for (std::size_t k = body_begin; k < body_end; ++k)
          if (tmpl(k)) put(k, place::quoted_heredoc);
      } else {
        lexer sub(u_, body_begin, body_end, places_, log_, depth_ + 1, forced_);
        sub.heredoc_body();
      }
    }
  }

  // Shell code: the whole script, or after "$(" up to its ")" (`in_parens`).
  void script(bool in_parens) {
    guard g(*this);
    int parens = 0;
    bool word_start = true; // nothing of a word read yet
    bool command = true;    // a word here would be a command name or reserved word
    bool in_word = false, plain = false, was_command = false, redirect_target = false;
    std::size_t word_begin = 0;
    // case … in … esac: a pattern's ")" does not close "$(".
    enum class case_state { none, subject, in, pattern } cs = case_state::none;
    int cases = 0;
    // The simple command being read, for builtin_refusal: its words, and
    // where its templates (nested ones too) start in log_.
    bool cmd_active = false;
    std::size_t cmd_log = 0;
    std::vector<word_info> cmd_words;
    // The unquoted characters of the word being read that make it a brace
    // expansion or a pattern.
    bool brace_open = false, brace_sep = false, bracket_open = false;
    word_info flags;
    // bash's words before a command: `time -p --`, `coproc NAME` before a
    // compound command, `function NAME` before its body.
    bool time_opts = false, function_name = false;
    int coproc_words = 0; // 1: after "coproc"; 2: after "coproc NAME"
    auto end_command = [&] {
      if (!cmd_active) return;
      cmd_active = false;
      place why = builtin_refusal(cmd_words);
      if (why == place::word) return;
      for (std::size_t k = cmd_log; k < log_.size(); ++k) {
        place& p = places_[log_[k]];
        if (!refused(p) && p != place::comment) p = why;
      }
    };
    // Inside [[ … ]], && || ( ) and newlines do not end the command.
    auto in_test = [&] { return cmd_active && !cmd_words.empty() && cmd_words[0].raw == "[["; };

    auto finish_word = [&] {
      if (!in_word) return;
      in_word = false;
      word_info wi = describe_word(word_begin, i_, plain);
      wi.brace = flags.brace;
      wi.glob = flags.glob;
      wi.slash = flags.slash;
      const std::string w = wi.raw;
      if (redirect_target) {
        redirect_target = false;
        command = was_command;
        return;
      }
      bool after_time = std::exchange(time_opts, false);
      int after_coproc = std::exchange(coproc_words, 0);
      if (std::exchange(function_name, false)) { // its body follows
        command = true;
        return;
      }
      if (after_time && was_command && (w == "-p" || w == "--")) {
        time_opts = w == "-p";
        command = true;
        end_command();
        return;
      }
      if (after_coproc == 2 && (w == "{" || w == "[[" || w == "if" || w == "while" ||
                                w == "until" || w == "for" || w == "select" || w == "case")) {
        // `coproc NAME` and a compound command: NAME was no command name
        cmd_words.clear();
        was_command = true;
      } else if (after_coproc == 1 && was_command && !w.empty() &&
                 std::all_of(w.begin(), w.end(), is_name_char)) {
        coproc_words = 2;
      }
      if (cmd_active) {
        cmd_words.push_back(std::move(wi));
        if (w == "]]" && in_test()) end_command();
      }
      command = false;
      switch (cs) {
      case case_state::subject:
        cs = case_state::in;
        return;
      case case_state::in:
        if (w == "in") {
          ++cases;
          cs = case_state::pattern;
        } else {
          cs = case_state::none;
        }
        return;
      case case_state::pattern:
        if (w == "esac") {
          --cases;
          cs = case_state::none;
        }
        return;
      case case_state::none:
        break;
      }
      if (!was_command) return;
      if (w == "case") {
        cs = case_state::subject;
      } else if (w == "esac" && cases > 0) {
        --cases;
      } else if (w == "function") {
        end_command(); // the name is no command
        function_name = true;
      } else if (keeps_command_position(w)) {
        command = true;
        end_command(); // the next word starts a command of its own
        time_opts = w == "time";
        coproc_words = w == "coproc" ? 1 : 0;
      }
    };
    auto begin_word = [&] {
      if (in_word) return;
      in_word = true;
      plain = true;
      was_command = command;
      word_begin = i_;
      word_start = false;
      flags = {};
      brace_open = brace_sep = bracket_open = false;
      if (command && !cmd_active && !redirect_target) {
        cmd_active = true;
        cmd_log = log_.size();
        cmd_words.clear();
      }
    };
    auto operator_done = [&] {
      word_start = true;
      command = true;
      time_opts = function_name = false;
      coproc_words = 0;
      if (!in_test()) end_command();
    };

    // An unquoted character of a word: what makes it a brace expansion
    // ({a,b}, {1..3}) or a pattern.
    auto unquoted = [&](char c) {
      switch (c) {
      case '{':
        brace_open = true;
        brace_sep = false;
        break;
      case ',':
        brace_sep = brace_sep || brace_open;
        break;
      case '.':
        brace_sep = brace_sep || (brace_open && is(i_ + 1, '.'));
        break;
      case '}':
        flags.brace = flags.brace || (brace_open && brace_sep);
        break;
      case '*':
      case '?':
        flags.glob = true;
        break;
      case '[':
        bracket_open = true;
        break;
      case ']':
        flags.glob = flags.glob || bracket_open;
        break;
      case '/':
        flags.slash = true;
        break;
      default:
        break;
      }
    };

    while (i_ < end_) {
      if (tmpl(i_)) {
        begin_word();
        plain = false;
        put(i_++, place::word);
        continue;
      }
      char c = ch(i_);
      if (word_start && !in_word && c == '#') {
        while (i_ < end_ && !is(i_, '\n')) {
          if (tmpl(i_)) put(i_, place::comment);
          ++i_;
        }
        continue;
      }
      if (is_blank(c)) {
        finish_word();
        word_start = true;
        ++i_;
        continue;
      }
      if (c == '\n') {
        finish_word();
        ++i_;
        operator_done();
        if (!pending_.empty()) read_heredocs();
        continue;
      }
      if (c == ';' || c == '&' || c == '|') {
        finish_word();
        std::size_t k = i_ + 1;
        while (k < end_ && k < i_ + 3 && (is(k, ';') || is(k, '&') || is(k, '|')))
          ++k;
        bool case_sep = c == ';' && (is(i_ + 1, ';') || is(i_ + 1, '&'));
        i_ = k;
        operator_done();
        if (case_sep && cases > 0) cs = case_state::pattern;
        continue;
      }
      if (c == '(') {
        finish_word();
        if (cs == case_state::pattern) { // a pattern's optional "("
          ++i_;
          word_start = true;
          continue;
        }
        if (word_start && is(i_ + 1, '(')) { // ((…)), for ((…))
          i_ += 2;
          if (!arithmetic(place::arithmetic_cmd)) ++parens; // ( (…) …): the outer is open
          word_start = true;
          command = false;
          continue;
        }
        ++parens;
        ++i_;
        operator_done();
        continue;
      }
      if (c == ')') {
        finish_word();
        ++i_;
        if (cs == case_state::pattern) {
          cs = case_state::none;
        } else if (parens > 0) {
          --parens;
        } else if (in_parens) {
          end_command();
          return;
        }
        operator_done();
        continue;
      }
      if (c == '<' || c == '>') {
        finish_word();
        if (c == '<' && is(i_ + 1, '<') && !is(i_ + 2, '<')) {
          heredoc_operator();
          word_start = true;
          continue;
        }
        // < > >> << <<< <& >& >| <> (a "(" after < or > is bash's process
        // substitution: read as parentheses)
        std::size_t k = i_ + 1;
        while (k < end_ && k < i_ + 3 && (is(k, '<') || is(k, '>') || is(k, '&') || is(k, '|')))
          ++k;
        i_ = k;
        word_start = true;
        redirect_target = true;
        was_command = command;
        continue;
      }
      if (c == '\\' && is(i_ + 1, '\n')) { // a line continuation: as if it were not there
        i_ += 2;
        continue;
      }
      if (!in_word) {
        if (std::size_t n = subscript_start()) {
          begin_word();
          plain = false;
          i_ += n;
          brackets(place::subscript);
          continue;
        }
      }
      begin_word();
      if (c == '\\') {
        plain = false;
        backslash();
      } else if (c == '\'') {
        plain = false;
        single_quoted();
      } else if (c == '"') {
        plain = false;
        double_quoted();
      } else if (c == '`') {
        plain = false;
        backtick(false);
      } else if (c == '$') {
        plain = false;
        dollar(false);
      } else {
        unquoted(c);
        ++i_;
      }
    }
    finish_word();
    end_command();
  }

  const std::vector<unit>& u_;
  std::size_t i_;
  std::size_t end_;
  std::vector<place>& places_;
  std::vector<std::size_t>& log_; // templates in the order they were placed, at every level
  int depth_;
  place forced_; // place::word: nothing forced
  std::vector<heredoc> pending_;
};

// Where each template of `text` stands. Throws too_deep.
std::vector<place> places_of(std::string_view text, const std::vector<template_span>& spans) {
  std::vector<unit> units;
  units.reserve(text.size());
  std::size_t pos = 0;
  for (std::size_t k = 0; k < spans.size(); ++k) {
    for (; pos < spans[k].open; ++pos)
      units.push_back({text[pos], -1});
    units.push_back({0, static_cast<int>(k)});
    pos = spans[k].end;
  }
  for (; pos < text.size(); ++pos)
    units.push_back({text[pos], -1});
  std::vector<place> places(spans.size(), place::word);
  std::vector<std::size_t> log;
  lexer lx(units, 0, units.size(), places, log, 0, place::word);
  lx.top();
  return places;
}

std::string shown(std::string_view expr) {
  return "{{" + std::string(expr) + "}}";
}

std::string_view basename_of(std::string_view program) {
  auto slash = program.rfind('/');
  return slash == std::string_view::npos ? program : program.substr(slash + 1);
}

// bash, zsh and ksh evaluate values as arithmetic (where a[$(cmd)] runs
// cmd) in more places than a reader can follow: quoted or continued
// command names, function bodies, prefixes, and their own builtins.
std::string foreign_shell_refusal(std::string_view program, const std::string& t) {
  std::string name(basename_of(program));
  return "template \"" + t + "\" is in a " + name + " script: " + name +
         " can run a value as code in arithmetic (let, declare -i, [[ -eq ]], array subscripts, "
         "...), which no reader of the script can rule out; pass the value as an argument after "
         "the script and use \"$1\": [\"" +
         name + "\", \"-c\", \"echo \\\"$1\\\"\", \"" + name + "\", \"" + t +
         "\"], or use a \"run\" string (/bin/sh)";
}

std::string option_refusal(std::string_view program, const std::string& t) {
  std::string name(basename_of(program));
  return "template \"" + t + "\" is among the options of " + name +
         ", or could be read as one (a value starting with \"-\" or \"+\"): options must be "
         "literal, so that which argument is the script is known; pass the value as an argument "
         "after the script and use \"$1\": [\"" +
         name + "\", \"-c\", \"echo \\\"$1\\\"\", \"" + name + "\", \"" + t +
         "\"] (a script file named by a template goes after \"--\": [\"" + name + "\", \"--\", \"" +
         t + "\"])";
}

// The first template of a text as written, for a message.
std::string first_template(std::string_view text) {
  try {
    auto spans = find_templates(text);
    if (!spans.empty()) return shown(spans[0].expr);
  } catch (const smithers_error&) {
  }
  return std::string(text); // a syntax error: check_template reports it
}

// How a shell (argv[0]) reads its arguments: whether -c is among its
// options, its first operand (argv.size(): none), and the first argument
// holding a template that is, or could be, an option (0: none; then the
// operand is not known).
struct shell_args {
  bool c = false;
  std::size_t operand = 0;
  std::size_t option_template = 0;
};

shell_args read_shell_args(const std::vector<std::string>& argv) {
  shell_args r;
  r.operand = argv.size();
  std::size_t k = 1;
  // An option's value (-o NAME, --rcfile FILE) must be literal too.
  auto value_at = [&](std::size_t v) {
    if (v < argv.size() && has_template(argv[v]) && r.option_template == 0) r.option_template = v;
  };
  while (k < argv.size()) {
    const std::string& a = argv[k];
    if (has_template(a)) {
      // Literal text that starts the argument decides what it is; a
      // template that starts it could make it an option, except for the
      // script after -c, which starts with a quote once expanded.
      char first = a.compare(0, 2, "{{") == 0 ? 0 : a[0];
      if (first == '-' || first == '+' || (first == 0 && !r.c))
        r.option_template = k;
      else
        r.operand = k;
      break;
    }
    if (a == "--" || a == "-") { // the end of the options
      if (k + 1 < argv.size()) r.operand = k + 1;
      break;
    }
    if (a.size() < 2 || (a[0] != '-' && a[0] != '+')) { // the first operand
      r.operand = k;
      break;
    }
    if (a[0] == '-' && a[1] == '-') { // bash's long options; two take a value
      if (a == "--rcfile" || a == "--init-file") {
        value_at(k + 1);
        k += 2;
      } else {
        ++k;
      }
    } else {
      std::size_t next = k + 1;
      for (std::size_t j = 1; j < a.size(); ++j) {
        if (a[j] == 'c') r.c = true;
        if (a[j] == 'o' || a[j] == 'O') value_at(next++); // -o NAME, -O SHOPT
      }
      k = next;
    }
    if (r.option_template) break;
  }
  if (r.option_template) r.operand = argv.size();
  return r;
}

const std::string too_deep_message = "the script nests quotes, $(...), ${...} and backticks more "
                                     "than " +
                                     std::to_string(max_depth) +
                                     " levels deep: its templates cannot be placed";

} // namespace

shell_expansion expand_shell(std::string_view text, const template_scope& scope,
                             std::string_view program) {
  shell_expansion out;
  auto spans = find_templates(text);
  if (spans.empty()) {
    out.script = std::string(text);
    return out;
  }
  if (!is_plain_posix_shell(program))
    throw smithers_error(errc::invalid_workflow,
                         foreign_shell_refusal(program, shown(spans[0].expr)),
                         json{{"template", shown(spans[0].expr)}});
  std::vector<place> places;
  try {
    places = places_of(text, spans);
  } catch (const too_deep&) {
    throw smithers_error(errc::invalid_workflow, too_deep_message);
  }
  for (std::size_t k = 0; k < spans.size(); ++k)
    if (refused(places[k]))
      throw smithers_error(errc::invalid_workflow, refusal(places[k], shown(spans[k].expr)),
                           json{{"template", shown(spans[k].expr)}});

  std::unordered_map<std::string_view, std::string> names; // expression -> variable
  out.script.reserve(text.size() + 32 * spans.size());
  std::size_t pos = 0;
  for (std::size_t k = 0; k < spans.size(); ++k) {
    const auto& t = spans[k];
    out.script.append(text.substr(pos, t.open - pos));
    pos = t.end;
    if (places[k] == place::comment) {
      out.script.append(text.substr(t.open, t.end - t.open));
      continue;
    }
    auto [it, fresh] = names.try_emplace(t.expr);
    if (fresh) {
      it->second = std::string(shell_template_prefix) + std::to_string(names.size());
      std::string value = resolve_template(t.expr, scope);
      check_arg_size(it->second.size() + 1 + value.size(), t.expr);
      out.env.emplace(it->second, std::move(value));
    }
    const std::string& v = it->second;
    switch (places[k]) {
    case place::word:
      out.script += "\"${" + v + "}\"";
      break;
    case place::single_quoted:
      out.script += "'\"${" + v + "}\"'";
      break;
    default: // double_quoted, heredoc
      out.script += "${" + v + "}";
      break;
    }
  }
  out.script.append(text.substr(pos));
  check_arg_size(out.script.size(), {});
  return out;
}

problems check_shell_template(std::string_view text, const std::string& path,
                              std::string_view program) {
  problems out;
  if (!has_template(text)) return out;
  std::vector<template_span> spans;
  try {
    spans = find_templates(text);
  } catch (const smithers_error&) {
    return out; // a syntax error: check_template reports it
  }
  if (!is_plain_posix_shell(program)) { // every template, a comment's too: nothing is read
    for (const auto& t : spans)
      out.push_back({path, foreign_shell_refusal(program, shown(t.expr))});
    return out;
  }
  std::vector<place> places;
  try {
    places = places_of(text, spans);
  } catch (const too_deep&) {
    out.push_back({path, too_deep_message});
    return out;
  }
  for (std::size_t k = 0; k < spans.size(); ++k)
    if (refused(places[k])) out.push_back({path, refusal(places[k], shown(spans[k].expr))});
  return out;
}

bool is_shell_program(std::string_view program) {
  static constexpr std::string_view shells[] = {"sh",    "bash", "rbash", "dash", "zsh", "ksh",
                                                "ksh93", "mksh", "ash",   "posh", "yash"};
  return std::find(std::begin(shells), std::end(shells), basename_of(program)) != std::end(shells);
}

bool is_plain_posix_shell(std::string_view program) {
  static constexpr std::string_view shells[] = {"sh", "dash", "ash", "posh"};
  return std::find(std::begin(shells), std::end(shells), basename_of(program)) != std::end(shells);
}

bool is_shell_script_arg(const std::vector<std::string>& argv, std::size_t i) {
  if (argv.empty() || i == 0 || i >= argv.size() || !is_shell_program(argv[0])) return false;
  auto r = read_shell_args(argv);
  return r.c && r.operand == i;
}

shell_option_problem check_shell_options(const std::vector<std::string>& argv) {
  shell_option_problem out;
  if (argv.empty() || !is_shell_program(argv[0])) return out;
  auto r = read_shell_args(argv);
  if (r.option_template) {
    out.index = r.option_template;
    out.message = option_refusal(argv[0], first_template(argv[r.option_template]));
  }
  return out;
}

argv_expansion expand_argv(const std::vector<std::string>& argv, const template_scope& scope) {
  if (auto p = check_shell_options(argv); p.index)
    throw smithers_error(errc::invalid_workflow, p.message,
                         json{{"template", first_template(argv[p.index])}});
  argv_expansion out;
  out.argv.reserve(argv.size());
  for (std::size_t i = 0; i < argv.size(); ++i) {
    if (is_shell_script_arg(argv, i)) {
      auto sh = expand_shell(argv[i], scope, argv[0]);
      out.env = std::move(sh.env);
      out.argv.push_back(std::move(sh.script));
    } else {
      out.argv.push_back(expand(argv[i], scope));
    }
  }
  return out;
}

} // namespace smithers::spec
