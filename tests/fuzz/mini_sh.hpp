// A tiny POSIX sh evaluator for the template fuzz target's oracle: it runs
// the few script shapes the target renders (printf '%s', cat with a
// here-document, assignments, $(…), `…`, quotes, comments) with the
// expansion's environment, without running a shell, and says what the
// script prints. It also refuses what would make a value unsafe: a
// parameter expansion outside double quotes (field splitting and pathname
// expansion) anywhere but in an assignment. Anything it does not know is a
// problem too: it is an oracle, not a shell.
#pragma once

#include <algorithm>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace smithers::fuzz {

class mini_sh {
public:
  explicit mini_sh(const std::map<std::string, std::string>& env) : env_(env) {}

  /// Runs `script`; false (and problem()) on a construct it does not know
  /// or an unquoted expansion.
  bool run(std::string_view script) {
    std::size_t i = 0;
    script_ = script;
    if (!commands(i, false)) return false;
    return true;
  }
  const std::string& output() const { return out_; }
  const std::string& problem() const { return problem_; }

private:
  struct heredoc {
    std::string delim;
    bool strip_tabs = false;
    std::string body; // expanded
  };

  bool fail(std::string what, std::size_t at) {
    if (problem_.empty())
      problem_ = what + " at byte " + std::to_string(at) + " of: " + std::string(script_);
    return false;
  }

  static bool blank(char c) { return c == ' ' || c == '\t'; }
  static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  }
  char at(std::size_t i) const { return i < script_.size() ? script_[i] : '\0'; }
  bool end(std::size_t i) const { return i >= script_.size(); }

  std::string lookup(const std::string& name) const {
    if (auto it = vars_.find(name); it != vars_.end()) return it->second;
    if (auto it = env_.find(name); it != env_.end()) return it->second;
    return {};
  }

  // A command substitution's text: its output without trailing newlines.
  bool substitute(std::string_view body, std::string& into) {
    mini_sh sub(env_);
    sub.vars_ = vars_; // a subshell: its assignments stay there
    if (!sub.run(body)) return fail("in a command substitution: " + sub.problem(), 0);
    std::string o = sub.out_;
    while (!o.empty() && o.back() == '\n')
      o.pop_back();
    into += o;
    return true;
  }

  // After "$" at i (i points at "$"). `quoted`: inside "…" or a here-document.
  bool dollar(std::size_t& i, std::string& into, bool quoted, bool assignment) {
    char c = at(i + 1);
    if (c == '{') {
      std::size_t close = script_.find('}', i + 2);
      if (close == std::string_view::npos) return fail("unclosed ${", i);
      std::string name(script_.substr(i + 2, close - i - 2));
      for (char n : name)
        if (!name_char(n)) return fail("a ${...} that is not a plain name", i);
      if (!quoted && !assignment) return fail("an unquoted parameter expansion", i);
      into += lookup(name);
      i = close + 1;
      return true;
    }
    if (name_char(c) && !(c >= '0' && c <= '9')) {
      std::size_t k = i + 1;
      while (name_char(at(k)))
        ++k;
      if (!quoted && !assignment) return fail("an unquoted parameter expansion", i);
      into += lookup(std::string(script_.substr(i + 1, k - i - 1)));
      i = k;
      return true;
    }
    if (c == '(') {
      if (at(i + 2) == '(') return fail("arithmetic", i);
      // The body runs to the ")" that closes it: parse it to find it.
      mini_sh scan(env_);
      scan.script_ = script_;
      scan.vars_ = vars_;
      std::size_t k = i + 2;
      if (!scan.commands(k, true)) return fail("in $(...): " + scan.problem(), i);
      if (!quoted && !assignment) return fail("an unquoted command substitution", i);
      std::string o = scan.out_;
      while (!o.empty() && o.back() == '\n')
        o.pop_back();
      into += o;
      i = k + 1; // past ")"
      return true;
    }
    into += '$'; // a literal dollar
    ++i;
    return true;
  }

  // At "`": the body up to the unescaped "`", backslashes removed before
  // $ ` \ (and " inside "…"), run as a script.
  bool backtick(std::size_t& i, std::string& into, bool dq, bool assignment) {
    std::string body;
    std::size_t k = i + 1;
    while (!end(k) && at(k) != '`') {
      if (at(k) == '\\' && !end(k + 1)) {
        char n = at(k + 1);
        if (n == '$' || n == '`' || n == '\\' || (dq && n == '"')) {
          body += n;
          k += 2;
          continue;
        }
      }
      body += at(k++);
    }
    if (end(k)) return fail("unclosed backtick", i);
    if (!dq && !assignment) return fail("an unquoted command substitution", i);
    i = k + 1;
    return substitute(body, into);
  }

  // Inside "…" from after the opening quote to after the closing one.
  bool double_quoted(std::size_t& i, std::string& into) {
    while (!end(i) && at(i) != '"') {
      char c = at(i);
      if (c == '\\') {
        char n = at(i + 1);
        if (n == '$' || n == '`' || n == '"' || n == '\\') {
          into += n;
          i += 2;
        } else if (n == '\n') {
          i += 2;
        } else {
          into += c;
          ++i;
        }
      } else if (c == '$') {
        if (!dollar(i, into, true, false)) return false;
      } else if (c == '`') {
        if (!backtick(i, into, true, false)) return false;
      } else {
        into += c;
        ++i;
      }
    }
    if (end(i)) return fail("unclosed double quote", i);
    ++i;
    return true;
  }

  // One word from i; `in_parens`: an unquoted ")" ends it.
  bool word(std::size_t& i, std::string& into, bool& assignment) {
    std::size_t k = i;
    while (name_char(at(k)) && !(k == i && at(k) >= '0' && at(k) <= '9'))
      ++k;
    assignment = k > i && at(k) == '=';
    while (!end(i)) {
      char c = at(i);
      if (blank(c) || c == '\n' || c == ';' || c == ')' || c == '&' || c == '|' || c == '<' ||
          c == '>' || c == '(')
        break;
      if (c == '\'') {
        std::size_t close = script_.find('\'', i + 1);
        if (close == std::string_view::npos) return fail("unclosed single quote", i);
        into.append(script_.substr(i + 1, close - i - 1));
        i = close + 1;
      } else if (c == '"') {
        ++i;
        if (!double_quoted(i, into)) return false;
      } else if (c == '\\') {
        if (at(i + 1) != '\n') into += at(i + 1);
        i += 2;
      } else if (c == '$') {
        if (!dollar(i, into, false, assignment)) return false;
      } else if (c == '`') {
        if (!backtick(i, into, false, assignment)) return false;
      } else if (c == '*' || c == '?' || c == '[') {
        return fail("a pattern character", i);
      } else {
        into += c;
        ++i;
      }
    }
    return true;
  }

  // The bodies of pending here-documents, from the line after i.
  bool read_bodies(std::size_t& i, std::vector<heredoc>& docs) {
    for (auto& h : docs) {
      std::string raw;
      bool found = false;
      while (!end(i)) {
        std::size_t nl = script_.find('\n', i);
        std::string_view line =
            script_.substr(i, nl == std::string_view::npos ? std::string_view::npos : nl - i);
        i = nl == std::string_view::npos ? script_.size() : nl + 1;
        std::size_t tabs = 0;
        if (h.strip_tabs)
          while (tabs < line.size() && line[tabs] == '\t')
            ++tabs;
        line.remove_prefix(tabs);
        if (line == h.delim) {
          found = true;
          break;
        }
        raw.append(line);
        raw += '\n';
      }
      if (!found) return fail("a here-document without its delimiter", i);
      // Expanded like "…", but a double quote is an ordinary character.
      mini_sh body(env_);
      body.vars_ = vars_;
      body.script_ = raw;
      std::size_t k = 0;
      while (!body.end(k)) {
        char c = body.at(k);
        if (c == '\\' &&
            (body.at(k + 1) == '$' || body.at(k + 1) == '`' || body.at(k + 1) == '\\')) {
          h.body += body.at(k + 1);
          k += 2;
        } else if (c == '\\' && body.at(k + 1) == '\n') {
          k += 2;
        } else if (c == '$') {
          if (!body.dollar(k, h.body, true, false)) return fail(body.problem(), i);
        } else if (c == '`') {
          if (!body.backtick(k, h.body, true, false)) return fail(body.problem(), i);
        } else {
          h.body += c;
          ++k;
        }
      }
    }
    return true;
  }

  bool execute(const std::vector<std::string>& words, const std::vector<bool>& assignments,
               const std::vector<heredoc>& docs, std::size_t at_byte) {
    std::size_t n = 0;
    while (n < words.size() && assignments[n])
      ++n;
    if (n == words.size()) { // assignments alone
      for (const auto& w : words) {
        auto eq = w.find('=');
        vars_[w.substr(0, eq)] = w.substr(eq + 1);
      }
      return true;
    }
    const std::string& cmd = words[n];
    if (cmd == "printf") {
      if (n + 1 >= words.size() || words[n + 1] != "%s")
        return fail("printf without '%s'", at_byte);
      for (std::size_t k = n + 2; k < words.size(); ++k)
        out_ += words[k];
      return true;
    }
    if (cmd == "cat" && words.size() == n + 1 && docs.size() == 1) {
      out_ += docs[0].body;
      return true;
    }
    return fail("a command it does not know: " + cmd, at_byte);
  }

  // Commands from i to the end (or, `in_parens`, to the ")" that closes a
  // $( ), left at i).
  bool commands(std::size_t& i, bool in_parens) {
    while (!end(i)) {
      std::vector<std::string> words;
      std::vector<bool> assignments;
      std::vector<heredoc> docs;
      std::size_t start = i;
      bool closed = false, bodies_read = false;
      while (!end(i)) {
        char c = at(i);
        if (blank(c)) {
          ++i;
        } else if (c == '#') {
          while (!end(i) && at(i) != '\n')
            ++i;
        } else if (c == '\n' || c == ';') {
          ++i;
          if (c == '\n' && !docs.empty()) {
            if (!read_bodies(i, docs)) return false;
            bodies_read = true;
          }
          break;
        } else if (c == ')') {
          if (!in_parens) return fail("an unmatched )", i);
          closed = true;
          break;
        } else if (c == '<' && at(i + 1) == '<') {
          heredoc h;
          i += 2;
          if (at(i) == '-') {
            h.strip_tabs = true;
            ++i;
          }
          while (blank(at(i)))
            ++i;
          while (!end(i) && name_char(at(i)))
            h.delim += at(i++);
          if (h.delim.empty()) return fail("a here-document delimiter it does not know", i);
          docs.push_back(std::move(h));
        } else if (c == '&' || c == '|' || c == '<' || c == '>' || c == '(') {
          return fail("an operator it does not know", i);
        } else {
          std::string w;
          bool assignment = false;
          if (!word(i, w, assignment)) return false;
          words.push_back(std::move(w));
          assignments.push_back(
              assignment && words.size() == assignments.size() + 1 &&
              std::all_of(assignments.begin(), assignments.end(), [](bool a) { return a; }));
        }
      }
      // A here-document whose command ends the script or the $( ): its body
      // would start after a newline that is not there.
      if (!docs.empty() && !bodies_read) return fail("a here-document without a body", i);
      if (!words.empty() && !execute(words, assignments, docs, start)) return false;
      if (closed) return true;
    }
    if (in_parens) return fail("an unclosed $(", i);
    return true;
  }

  const std::map<std::string, std::string>& env_;
  std::map<std::string, std::string> vars_;
  std::string_view script_;
  std::string out_;
  std::string problem_;
};

} // namespace smithers::fuzz
