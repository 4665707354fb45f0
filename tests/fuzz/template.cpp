// Fuzz target `template`: templates (expr/template.hpp) and shell-script
// templates (expr/shell_template.hpp). The first byte picks a mode:
//
// 0  hostile value, fixed templates. The rest of the input is the value of
//    {{input.v}} (any bytes). Each script of a fixed set — the value bare,
//    in part of a word, in '…', in "…", in an unquoted here-document (<< and
//    <<-), in $(…) and `…` (nested, quoted, holding a here-document), after
//    an assignment prefix, in a comment — goes through expand_shell. The
//    result must be exactly the script with the template replaced by the
//    variable reference spelled for its place ("${V}" in a word, ${V} in
//    "…" and here-documents, '"${V}"' in '…', unchanged in a comment), and
//    the environment must hold exactly the value. Then mini_sh (a tiny
//    POSIX sh evaluator, no shell runs) runs the expanded script with that
//    environment: it refuses any expansion outside double quotes, and what
//    the script prints must be the value as the template placed it (for a
//    command substitution, without its trailing newlines, as sh does). So
//    the value can never be code: the script does not contain it, and each
//    reference to it is a quoted word. argv: a non-script argument is the
//    value verbatim, a `sh -c` script is spelled like a "run" string, the
//    script of bash refuses templates, a template that could be a shell's
//    option is refused. A value with a NUL byte, or too large for one
//    environment string, is an error (INVALID_INPUT / INVALID_ARGUMENT)
//    everywhere, never cut short.
// 1  fuzzed script. The rest is "script\0value": check_template,
//    check_shell_template, expand and expand_shell with hostile values in
//    every root. Oracle: expand() is the text with each template replaced
//    by its value; expand_shell's script does not depend on the values (the
//    same script for two different values: a value never becomes code), is
//    the text with each template replaced by one of the three spellings (or
//    left as written, in a comment), and its environment holds exactly the
//    resolved values; expand_shell refuses (INVALID_WORKFLOW) exactly what
//    check_shell_template reports.
// 2  fuzzed argv. The rest is NUL-separated arguments, the last one the
//    value. Oracle: expand_argv refuses what check_shell_options reports;
//    its script argument (is_shell_script_arg) is expand_shell's, any other
//    argument expand()'s; and for a shell, the arguments that are options,
//    whether -c is among them, and which argument is the script are the same
//    before and after the expansion (read independently of the code): a
//    value never becomes an option or moves the script.
#include "fuzz_support.hpp"
#include "mini_sh.hpp"

#include "expr/shell_template.hpp"
#include "expr/template.hpp"
#include "util/json_parse.hpp"

#include <smithers/limits.hpp>

#include <map>
#include <unordered_map>

using namespace smithers;
using namespace smithers::spec;

namespace {

const std::string V = "SMITHERS_TEMPLATE_1";
const std::string W = "\"${" + V + "}\"";   // unquoted word
const std::string D = "${" + V + "}";       // inside "…", here-document body
const std::string S = "'\"${" + V + "}\"'"; // inside '…'

struct context {
  const char* name;
  std::string script;   // with {{input.v}}
  std::string expected; // the expanded script
  std::string prefix, suffix;
  bool strips_newlines = false; // the value ends a command substitution
  int times = 1;                // the value printed this many times
};

const std::vector<context>& contexts() {
  static const std::vector<context> cs = {
      {"unquoted", "printf '%s' {{input.v}}", "printf '%s' " + W, "", ""},
      {"part of a word", "printf '%s' pre{{input.v}}post", "printf '%s' pre" + W + "post", "pre",
       "post"},
      {"single quotes", "printf '%s' 'pre {{input.v}} post'", "printf '%s' 'pre " + S + " post'",
       "pre ", " post"},
      {"double quotes", "printf '%s' \"pre {{input.v}} post\"",
       "printf '%s' \"pre " + D + " post\"", "pre ", " post"},
      {"twice", "printf '%s' {{input.v}} \"{{ input.v }}\"", "printf '%s' " + W + " \"" + D + "\"",
       "", "", false, 2},
      {"unquoted here-document", "cat <<EOF\npre {{input.v}}\nEOF", "cat <<EOF\npre " + D + "\nEOF",
       "pre ", "\n"},
      {"<<- here-document", "cat <<-EOF\n\t{{input.v}}\n\tEOF", "cat <<-EOF\n\t" + D + "\n\tEOF",
       "", "\n"},
      {"here-document in $( )", "x=$(cat <<EOF\n{{input.v}}.\nEOF\n); printf '%s' \"$x\"",
       "x=$(cat <<EOF\n" + D + ".\nEOF\n); printf '%s' \"$x\"", "", "."},
      {"backticks unquoted", "X=`printf '%s' {{input.v}}`; printf '%s' \"$X\"",
       "X=`printf '%s' " + W + "`; printf '%s' \"$X\"", "", "", true},
      {"backticks inside double quotes", "printf '%s' \"`printf '%s' {{input.v}}`\"",
       "printf '%s' \"`printf '%s' " + W + "`\"", "", "", true},
      {"escaped quotes in backticks in double quotes",
       "printf '%s' \"`printf '%s' \\\"{{input.v}}\\\"`\"",
       "printf '%s' \"`printf '%s' \\\"" + D + "\\\"`\"", "", "", true},
      {"nested backticks", "X=`printf '%s' \"\\`printf '%s' {{input.v}}\\`\"`; printf '%s' \"$X\"",
       "X=`printf '%s' \"\\`printf '%s' " + W + "\\`\"`; printf '%s' \"$X\"", "", "", true},
      {"$( ) unquoted", "X=$(printf '%s' {{input.v}}); printf '%s' \"$X\"",
       "X=$(printf '%s' " + W + "); printf '%s' \"$X\"", "", "", true},
      {"$( ) inside double quotes", "printf '%s' \"$(printf '%s' {{input.v}})\"",
       "printf '%s' \"$(printf '%s' " + W + ")\"", "", "", true},
      {"nested $( \"$( )\" )", "printf '%s' \"$(printf '%s' \"$(printf '%s' \"{{input.v}}\")\")\"",
       "printf '%s' \"$(printf '%s' \"$(printf '%s' \"" + D + "\")\")\"", "", "", true},
      {"assignment", "X={{input.v}}; printf %s \"$X\"", "X=" + W + "; printf %s \"$X\"", "", ""},
      {"comment", "printf '%s' \"{{input.v}}\" # {{input.v}} $(touch PWNED)",
       "printf '%s' \"" + D + "\" # {{input.v}} $(touch PWNED)", "", ""},
      {"single quotes in $( ) in double quotes", "printf '%s' \"$(printf '%s' 'a{{input.v}}b')\"",
       "printf '%s' \"$(printf '%s' 'a" + S + "b')\"", "a", "b"},
      {"here-document in double-quoted $( )", "printf '%s' \"$(cat <<EOF\n{{input.v}}.\nEOF\n)\"",
       "printf '%s' \"$(cat <<EOF\n" + D + ".\nEOF\n)\"", "", "."},
      {"here-document in backticks", "X=`cat <<EOF\n{{input.v}}.\nEOF\n`; printf '%s' \"$X\"",
       "X=`cat <<EOF\n" + D + ".\nEOF\n`; printf '%s' \"$X\"", "", "."},
      {"after an assignment prefix", "X=1 printf '%s' {{input.v}}", "X=1 printf '%s' " + W, "", ""},
      {"a quoted command name", "\"printf\" '%s' {{input.v}}", "\"printf\" '%s' " + W, "", ""},
  };
  return cs;
}

struct scope_data {
  json input;
  std::unordered_map<std::string, json> outputs;
  json locals;
  json earlier; // outputs.a@1
  template_scope scope() const {
    template_scope s;
    s.input = &input;
    s.outputs = &outputs;
    s.locals = &locals;
    s.run_id = "run-1";
    s.node_id = "t";
    s.iteration = 2;
    s.attempt = 1;
    s.output_at = [this](std::string_view id, std::int64_t it) -> const json* {
      return id == "a" && it == 1 ? &earlier : nullptr;
    };
    return s;
  }
};

// Every root holds the value somewhere.
scope_data hostile_scope(const std::string& value) {
  scope_data d;
  d.input = {{"v", value}, {"w", "y"}, {"n", 3}, {"list", {value, 2}}, {"obj", {{"k", value}}}};
  d.outputs = {{"a", {{"f", value}, {"g", {1, value}}}}};
  d.locals = {{"item", value}};
  d.earlier = {{"f", value}};
  return d;
}

bool too_large(const std::string& value) {
  return V.size() + 1 + value.size() + 1 > limits::max_arg_string_bytes;
}

std::string strip_newlines(std::string s) {
  while (!s.empty() && s.back() == '\n')
    s.pop_back();
  return s;
}

template <class F> std::optional<error> error_of(F&& f) {
  try {
    f();
  } catch (const smithers_error& e) {
    fuzz::check_error(e.err());
    return e.err();
  } catch (const std::exception& e) {
    fuzz::finding(std::string{"an exception that is not a smithers_error: "} + e.what());
  }
  return std::nullopt;
}

// The value of {{input.v}} as a template gives it: a string as-is, other
// JSON as compact text.
void fixed_templates(const json& v) {
  const std::string value = v.is_string() ? v.get<std::string>() : v.dump();
  json input = {{"v", v}};
  template_scope s;
  s.input = &input;
  const bool nul = value.find('\0') != std::string::npos;
  const bool big = too_large(value);
  auto expect_refusal = [&](const std::optional<error>& e, const char* where) {
    fuzz::require(e.has_value(), std::string{where} + ": a value with a NUL byte or too large for "
                                                      "an environment string was accepted");
    fuzz::require(e->code == (nul ? errc::invalid_input : errc::invalid_argument),
                  std::string{where} + ": the refusal has the wrong code", e->code);
  };

  for (const auto& c : contexts()) {
    shell_expansion ex;
    auto e = error_of([&] { ex = expand_shell(c.script, s); });
    if (nul || big) {
      expect_refusal(e, c.name);
      continue;
    }
    fuzz::require(!e, std::string{c.name} + ": expand_shell refused a value",
                  e ? e->message : std::string{});
    fuzz::require(ex.script == c.expected,
                  std::string{c.name} + ": the script is not the template with the reference",
                  ex.script);
    fuzz::require(ex.env.size() == 1 && ex.env.begin()->first == V &&
                      ex.env.begin()->second == value,
                  std::string{c.name} + ": the environment does not hold exactly the value");
    fuzz::mini_sh sh(ex.env);
    if (!sh.run(ex.script))
      fuzz::finding(std::string{c.name} + ": the expanded script is not safe: " + sh.problem());
    std::string want = c.prefix;
    for (int k = 0; k < c.times; ++k)
      want += c.strips_newlines ? strip_newlines(value) : value;
    want += c.suffix;
    fuzz::require(sh.output() == want,
                  std::string{c.name} + ": the script does not print the value", sh.output());
  }

  // argv: verbatim outside scripts.
  std::string arg;
  auto e = error_of([&] { arg = expand("pre{{input.v}}post", s); });
  if (nul || value.size() + 7 + 1 > limits::max_arg_string_bytes) {
    fuzz::require(e.has_value(), "expand accepted a value no argument can hold");
  } else {
    fuzz::require(!e && arg == "pre" + value + "post", "expand is not the value verbatim", arg);
  }
  argv_expansion ax;
  e = error_of([&] {
    ax = expand_argv({"sh", "-c", "printf '%s' {{input.v}}", "sh", "{{input.v}}"}, s);
  });
  if (nul || big) {
    expect_refusal(e, "expand_argv");
  } else {
    fuzz::require(!e, "expand_argv refused a value", e ? e->message : std::string{});
    fuzz::require(ax.argv.size() == 5 && ax.argv[0] == "sh" && ax.argv[1] == "-c" &&
                      ax.argv[2] == "printf '%s' " + W && ax.argv[3] == "sh" && ax.argv[4] == value,
                  "expand_argv: a script not spelled as a \"run\" string, or an argument not "
                  "verbatim");
    fuzz::require(ax.env.size() == 1 && ax.env.begin()->second == value,
                  "expand_argv: the environment does not hold the value");
  }
  // The script of a shell that is not a plain POSIX shell takes no template.
  e = error_of([&] { (void)expand_argv({"bash", "-c", "echo {{input.v}}"}, s); });
  fuzz::require(e && e->code == errc::invalid_workflow, "a bash script took a template");
  // A template where a shell's option could be.
  e = error_of([&] { (void)expand_argv({"sh", "{{input.v}}", "-c", "echo"}, s); });
  fuzz::require(e && e->code == errc::invalid_workflow, "a template among sh's options");
}

// mode 1 ------------------------------------------------------------------

// Whether `script` is `text` with each template replaced by one of the
// spellings of its variable (numbered in order of first use among the
// non-comments), or left as written (a comment); `numbers` gets the
// variable of each expression.
bool spelled(std::string_view text, const std::vector<template_span>& spans,
             std::string_view script, std::map<std::string_view, std::size_t>& numbers) {
  std::size_t in = 0, out = 0;
  for (const auto& t : spans) {
    auto lit = text.substr(in, t.open - in);
    if (script.substr(out, lit.size()) != lit) return false;
    out += lit.size();
    in = t.end;
    auto original = text.substr(t.open, t.end - t.open);
    auto it = numbers.find(t.expr);
    std::size_t n = it != numbers.end() ? it->second : numbers.size() + 1;
    std::string var = "${SMITHERS_TEMPLATE_" + std::to_string(n) + "}";
    bool matched = false;
    for (const std::string& s : {"'\"" + var + "\"'", "\"" + var + "\"", var}) {
      if (script.substr(out, s.size()) == s) {
        out += s.size();
        matched = true;
        if (it == numbers.end()) numbers.emplace(t.expr, n);
        break;
      }
    }
    if (!matched) {
      if (script.substr(out, original.size()) != original) return false;
      out += original.size();
    }
  }
  return script.substr(out) == text.substr(in);
}

void fuzzed_script(std::string_view text, const std::string& value) {
  if (!util::is_valid_utf8(text)) return; // templates come from JSON text
  auto syntax = check_template(text, "run", {"item"});
  auto shell = check_shell_template(text, "run");
  for (const auto& p : syntax)
    fuzz::require(util::is_valid_utf8(p.message), "check_template: invalid UTF-8", p.message);
  for (const auto& p : shell)
    fuzz::require(util::is_valid_utf8(p.message), "check_shell_template: invalid UTF-8", p.message);
  (void)template_output_refs(text);
  if (!syntax.empty()) {
    auto e = error_of([&] { (void)find_templates(text); });
    (void)e;
    return;
  }
  const auto spans = find_templates(text);
  fuzz::require(spans.empty() != has_template(text) || spans.empty(),
                "has_template disagrees with find_templates");

  auto a = hostile_scope(value);
  auto b = hostile_scope("x");
  const bool value_ok = value.find('\0') == std::string::npos && !too_large(value);

  // expand(): the text with each template's value in its place.
  std::string verbatim;
  auto e = error_of([&] { verbatim = expand(text, a.scope()); });
  if (!e) {
    std::string want;
    std::size_t pos = 0;
    for (const auto& t : spans) {
      want.append(text.substr(pos, t.open - pos));
      want += resolve_template(t.expr, a.scope());
      pos = t.end;
    }
    want.append(text.substr(pos));
    fuzz::require(verbatim == want, "expand is not the text with the values in place", verbatim);
  }

  shell_expansion xa, xb;
  auto ea = error_of([&] { xa = expand_shell(text, a.scope()); });
  auto eb = error_of([&] { xb = expand_shell(text, b.scope()); });
  if (!shell.empty()) {
    fuzz::require(ea && ea->code == errc::invalid_workflow && eb &&
                      eb->code == errc::invalid_workflow,
                  "check_shell_template refuses a script that expand_shell takes");
    return;
  }
  if (eb) {
    // With a harmless value only a missing one can fail.
    fuzz::require(eb->code == errc::template_missing_value,
                  "expand_shell refused a script check_shell_template passes: " + eb->message);
    return;
  }
  if (ea) {
    fuzz::require(!value_ok, "expand_shell refused a value it should take: " + ea->message);
    return;
  }
  fuzz::require(xa.script == xb.script,
                "the expanded script depends on the value (a value "
                "became code)",
                xa.script);
  std::map<std::string_view, std::size_t> numbers;
  fuzz::require(spelled(text, spans, xa.script, numbers),
                "the expanded script is not the text with variable references", xa.script);
  // The environment: exactly the resolved values (a template only in
  // comments has no variable).
  std::map<std::string, std::string> want;
  for (const auto& [expr, n] : numbers)
    want["SMITHERS_TEMPLATE_" + std::to_string(n)] = resolve_template(expr, a.scope());
  fuzz::require(xa.env == want, "the environment is not the resolved values");
  if (spans.empty())
    fuzz::require(xa.script == text && xa.env.empty(), "a script without templates changed");
}

// mode 2 ------------------------------------------------------------------

struct shell_reading {
  bool c = false;
  std::size_t operand; // argv.size(): none
  std::size_t options_end = 1;
};

// How a POSIX shell (and bash) reads its arguments, written independently of
// shell_template.cpp: options until "--", "-" or the first operand; -o and
// -O take a value; bash's --rcfile and --init-file take one.
shell_reading read_args(const std::vector<std::string>& argv) {
  shell_reading r;
  r.operand = argv.size();
  std::size_t k = 1;
  while (k < argv.size()) {
    const std::string& a = argv[k];
    if (a == "--" || a == "-") {
      r.operand = k + 1 < argv.size() ? k + 1 : argv.size();
      k = k + 1;
      break;
    }
    if (a.size() < 2 || (a[0] != '-' && a[0] != '+')) {
      r.operand = k;
      break;
    }
    if (a[0] == '-' && a[1] == '-') {
      k += a == "--rcfile" || a == "--init-file" ? 2 : 1;
      continue;
    }
    std::size_t next = k + 1;
    for (std::size_t j = 1; j < a.size(); ++j) {
      if (a[j] == 'c') r.c = true;
      if (a[j] == 'o' || a[j] == 'O') ++next;
    }
    k = next;
  }
  r.options_end = std::min(k, argv.size());
  return r;
}

void fuzzed_argv(const std::vector<std::string>& argv, const std::string& value) {
  for (const auto& a : argv)
    if (!util::is_valid_utf8(a)) return;
  auto d = hostile_scope(value);
  auto s = d.scope();
  auto option = check_shell_options(argv);
  argv_expansion out;
  auto e = error_of([&] { out = expand_argv(argv, s); });
  if (option.index) {
    fuzz::require(e && e->code == errc::invalid_workflow,
                  "expand_argv took what check_shell_options refuses");
    return;
  }
  if (e) return; // a missing value, a refused script, a syntax error: checked elsewhere
  fuzz::require(out.argv.size() == argv.size(), "expand_argv changed the number of arguments");
  bool had_script = false;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    if (is_shell_script_arg(argv, i)) {
      had_script = true;
      auto sh = expand_shell(argv[i], s, argv[0]);
      fuzz::require(out.argv[i] == sh.script && out.env == sh.env,
                    "the script argument is not expand_shell's");
    } else {
      fuzz::require(out.argv[i] == expand(argv[i], s), "an argument is not expand()'s");
    }
  }
  if (!had_script) fuzz::require(out.env.empty(), "an environment without a script");
  if (argv.empty() || !is_shell_program(argv[0])) return;
  // A value never becomes an option, nor moves the script.
  auto before = read_args(argv);
  auto after = read_args(out.argv);
  fuzz::require(before.c == after.c && before.operand == after.operand &&
                    before.options_end == after.options_end,
                "a value changed how the shell reads its arguments", out.argv[0]);
  for (std::size_t k = 1; k < before.options_end && k < argv.size(); ++k)
    fuzz::require(out.argv[k] == argv[k], "a shell option came from a template", out.argv[k]);
  // The code's own reading agrees with this one on the script.
  for (std::size_t i = 1; i < argv.size(); ++i)
    fuzz::require(is_shell_script_arg(argv, i) == (before.c && before.operand == i),
                  "is_shell_script_arg disagrees with how a shell reads its arguments", argv[i]);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const auto rest = fuzz::as_text(data + 1, size - 1);
  switch (data[0] % 3) {
  case 0: {
    fixed_templates(std::string(rest));
    // The same text as JSON: a non-string value goes in as compact JSON.
    if (auto v = util::parse_json(rest, {limits::max_input_depth}, nullptr); v && !v->is_string())
      fixed_templates(*v);
    break;
  }
  case 1: {
    auto parts = fuzz::split_parts(rest, 2);
    fuzzed_script(parts[0], std::string(parts[1]));
    break;
  }
  default: {
    std::vector<std::string> argv;
    std::string_view in = rest;
    while (argv.size() < 8) {
      auto nul = in.find('\0');
      argv.emplace_back(in.substr(0, nul));
      if (nul == std::string_view::npos) break;
      in.remove_prefix(nul + 1);
    }
    std::string value = argv.size() > 1 ? argv.back() : std::string{"-x"};
    if (argv.size() > 1) argv.pop_back();
    fuzzed_argv(argv, value);
    break;
  }
  }
  return 0;
}
