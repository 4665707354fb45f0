// Templates in shell scripts: what each becomes in each lexical context, the
// contexts that are refused, NUL bytes and oversize values, which argv
// element is a script, and a hostile corpus run through real shells.
#include <catch2/catch.hpp>

#include "expr/shell_template.hpp"
#include "format/parse.hpp"
#include "support/temp_dir.hpp"
#include "util/subprocess.hpp"

#include <smithers/limits.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <unistd.h>
#include <unordered_map>
#include <vector>

using namespace smithers::spec;
using smithers::json;
using smithers::smithers_error;
namespace errc = smithers::errc;
namespace limits = smithers::limits;

namespace {

// What template n becomes, by context.
std::string word(int n) { // unquoted
  return "\"${SMITHERS_TEMPLATE_" + std::to_string(n) + "}\"";
}
std::string dq(int n) { // inside "…" or a here-document body
  return "${SMITHERS_TEMPLATE_" + std::to_string(n) + "}";
}
std::string sq(int n) { // inside '…'
  return "'\"${SMITHERS_TEMPLATE_" + std::to_string(n) + "}\"'";
}

struct fixture {
  json input = {{"v", "x"}, {"w", "y"}, {"n", 3}};
  std::unordered_map<std::string, json> outputs = {{"a", {{"f", "out"}}}};
  template_scope scope() const {
    template_scope s;
    s.input = &input;
    s.outputs = &outputs;
    s.run_id = "run-1";
    s.node_id = "t";
    return s;
  }
};

smithers::error error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const smithers_error& e) {
    return e.err();
  }
  FAIL("expected an error");
  return {};
}

bool has_shell(const char* path) {
  return ::access(path, X_OK) == 0;
}

} // namespace

TEST_CASE("each template becomes a variable reference spelled for its context",
          "[shell_template]") {
  fixture f;
  struct case_t {
    const char* what;
    std::string text;
    std::string expected;
  };
  const std::vector<case_t> cases = {
      {"unquoted", "echo {{input.v}}", "echo " + word(1)},
      {"part of a word", "cp a{{input.v}}b c", "cp a" + word(1) + "b c"},
      {"double quotes", "echo \"Deploying {{input.v}} now\"",
       "echo \"Deploying " + dq(1) + " now\""},
      {"single quotes", "echo 'a {{input.v}} b'", "echo 'a " + sq(1) + " b'"},
      {"single quotes in JSON (examples/release-notes.json)", "echo '{\"lines\": {{input.n}}}'",
       "echo '{\"lines\": " + sq(1) + "}'"},
      {"a single quote inside double quotes is literal", "echo \"it's {{input.v}}\"",
       "echo \"it's " + dq(1) + "\""},
      {"a double quote inside single quotes is literal", "echo 'say \"{{input.v}}\"'",
       "echo 'say \"" + sq(1) + "\"'"},
      {"assignment", "X={{input.v}}; echo \"$X\"", "X=" + word(1) + "; echo \"$X\""},
      {"redirection target", "echo hi > {{input.v}}", "echo hi > " + word(1)},
      {"two templates numbered in order", "echo {{input.w}} {{input.v}}",
       "echo " + word(1) + " " + word(2)},
      {"the same expression shares one variable", "echo {{input.v}} \"{{ input.v }}\"",
       "echo " + word(1) + " \"" + dq(1) + "\""},
      {"every root", "echo {{outputs.a.f}} {{run_id}} {{node_id}} {{attempt}} {{iteration}}",
       "echo " + word(1) + " " + word(2) + " " + word(3) + " " + word(4) + " " + word(5)},
      // command substitution
      {"$( ) unquoted", "echo $(cat {{input.v}})", "echo $(cat " + word(1) + ")"},
      {"$( ) inside double quotes starts a fresh context", "echo \"$(cat {{input.v}})\"",
       "echo \"$(cat " + word(1) + ")\""},
      {"double quotes in $( ) in double quotes", "echo \"$(echo \"{{input.v}}\")\"",
       "echo \"$(echo \"" + dq(1) + "\")\""},
      {"single quotes in $( ) in double quotes", "echo \"$(echo '{{input.v}}')\"",
       "echo \"$(echo '" + sq(1) + "')\""},
      {"nested $( )", "echo \"$(echo \"$(echo {{input.v}})\")\" {{input.w}}",
       "echo \"$(echo \"$(echo " + word(1) + ")\")\" " + word(2)},
      {"a ) inside quotes does not close $( )", "echo \"$(echo ')' {{input.v}})\"",
       "echo \"$(echo ')' " + word(1) + ")\""},
      {"parentheses inside $( )", "echo \"$( (echo a) ; echo {{input.v}})\"",
       "echo \"$( (echo a) ; echo " + word(1) + ")\""},
      {"$( ( ...) ...) is a subshell, not arithmetic", "echo \"$( (echo {{input.v}}) )\"",
       "echo \"$( (echo " + word(1) + ") )\""},
      {"a case pattern's ) does not close $( )",
       "echo \"$(case a in a) echo {{input.v}};; (b) echo;; esac)\" \"{{input.w}}\"",
       "echo \"$(case a in a) echo " + word(1) + ";; (b) echo;; esac)\" \"" + dq(2) + "\""},
      {"case word and pattern", "case {{input.v}} in {{input.w}}) echo hit;; esac",
       "case " + word(1) + " in " + word(2) + ") echo hit;; esac"},
      // backticks
      {"backticks unquoted", "echo `cat {{input.v}}`", "echo `cat " + word(1) + "`"},
      {"backticks inside double quotes", "echo \"`cat {{input.v}}`\"",
       "echo \"`cat " + word(1) + "`\""},
      {"escaped double quotes in backticks in double quotes", "echo \"`echo \\\"{{input.v}}\\\"`\"",
       "echo \"`echo \\\"" + dq(1) + "\\\"`\""},
      {"nested backticks", "echo `echo \\`cat {{input.v}}\\``",
       "echo `echo \\`cat " + word(1) + "\\``"},
      {"backticks in a here-document", "cat <<EOF\n`echo {{input.v}}`\nEOF",
       "cat <<EOF\n`echo " + word(1) + "`\nEOF"},
      // here-documents
      {"unquoted here-document", "cat <<EOF\n{{input.v}}\nEOF\necho {{input.w}}",
       "cat <<EOF\n" + dq(1) + "\nEOF\necho " + word(2)},
      {"quotes in a here-document body are literal",
       "cat <<EOF\n'{{input.v}}' \"{{input.w}}\"\nEOF",
       "cat <<EOF\n'" + dq(1) + "' \"" + dq(2) + "\"\nEOF"},
      {"<<- strips tabs before the delimiter", "cat <<-EOF\n\t{{input.v}}\n\tEOF\necho {{input.w}}",
       "cat <<-EOF\n\t" + dq(1) + "\n\tEOF\necho " + word(2)},
      {"the body starts after the line", "cat <<EOF; echo {{input.w}}\n{{input.v}}\nEOF",
       "cat <<EOF; echo " + word(1) + "\n" + dq(2) + "\nEOF"},
      {"two here-documents on one line",
       "cat <<A - <<'B'\n{{input.v}}\nA\nliteral\nB\necho {{input.w}}",
       "cat <<A - <<'B'\n" + dq(1) + "\nA\nliteral\nB\necho " + word(2)},
      {"backslash-newline joins body lines before the delimiter is found",
       "cat <<EOF\nx\\\nEOF\n{{input.v}}\nEOF", "cat <<EOF\nx\\\nEOF\n" + dq(1) + "\nEOF"},
      {"a quoted here-document's body has no line joining",
       "cat <<'EOF'\nx\\\nEOF\necho {{input.v}}", "cat <<'EOF'\nx\\\nEOF\necho " + word(1)},
      {"$( ) in a here-document body", "cat <<EOF\n$(echo {{input.v}})\nEOF",
       "cat <<EOF\n$(echo " + word(1) + ")\nEOF"},
      {"a here-document inside $( )", "x=$(cat <<EOF\n{{input.v}}\nEOF\n); echo {{input.w}}",
       "x=$(cat <<EOF\n" + dq(1) + "\nEOF\n); echo " + word(2)},
      {"a here-string is a word (bash)", "cat <<<{{input.v}}", "cat <<<" + word(1)},
      {"<< in arithmetic is a shift", "echo $((1 << 2)) {{input.v}}",
       "echo $((1 << 2)) " + word(1)},
      // comments
      {"a comment keeps its template as written",
       "echo {{input.v}} # {{input.w}}\necho {{input.w}}",
       "echo " + word(1) + " # {{input.w}}\necho " + word(2)},
      {"a # inside a word is no comment", "echo a#{{input.v}}", "echo a#" + word(1)},
      {"$# is no comment", "echo $#{{input.v}}", "echo $#" + word(1)},
      {"a comment after a line continuation", "echo a \\\n# {{input.v}}",
       "echo a \\\n# {{input.v}}"},
      // escapes and dollars
      {"a quoted backslash before a template", "echo '\\{{input.v}}'", "echo '\\" + sq(1) + "'"},
      {"an escaped dollar before a template", "echo \\${{input.v}}", "echo \\$" + word(1)},
      {"$$ before a template", "echo $${{input.v}}", "echo $$" + word(1)},
      {"a dollar inside single quotes", "echo '${{input.v}}'", "echo '$" + sq(1) + "'"},
      {"an escaped quote inside double quotes", "echo \"a\\\"{{input.v}}\"",
       "echo \"a\\\"" + dq(1) + "\""},
      {"$'…' inside double quotes is not special", "echo \"$'{{input.v}}'\"",
       "echo \"$'" + dq(1) + "'\""},
      {"$\"…\" is a double-quoted string (bash)", "echo $\"a {{input.v}}\"",
       "echo $\"a " + dq(1) + "\""},
      {"after ${…} the context is back", "echo ${x:-\"}\"} {{input.v}}",
       "echo ${x:-\"}\"} " + word(1)},
      {"after $((…)) the context is back", "echo \"$((1 + (2)))\"{{input.v}}",
       "echo \"$((1 + (2)))\"" + word(1)},
      // brackets
      {"the test command", "[ {{input.v}} = x ] && [[ {{input.v}} == x ]]",
       "[ " + word(1) + " = x ] && [[ " + word(1) + " == x ]]"},
      {"a value assigned to an array element", "a[0]={{input.v}}", "a[0]=" + word(1)},
      {"a glob bracket before a template", "ls [ab]{{input.v}}", "ls [ab]" + word(1)},
      // builtins that evaluate some arguments, used safely
      {"[[ ]] comparing strings", "if [[ {{input.v}} == x && -n {{input.v}} ]]; then :; fi",
       "if [[ " + word(1) + " == x && -n " + word(1) + " ]]; then :; fi"},
      {"[ ] comparing numbers (the test builtin does not evaluate)", "[ {{input.v}} -eq 1 ]",
       "[ " + word(1) + " -eq 1 ]"},
      {"a let command of its own", "let x=1; echo {{input.v}}", "let x=1; echo " + word(1)},
      {"after [[ ]] another command", "[[ a -eq 1 ]] && echo {{input.v}}",
       "[[ a -eq 1 ]] && echo " + word(1)},
      {"let as an argument", "echo let {{input.v}}", "echo let " + word(1)},
      {"declare without -i", "declare x={{input.v}}; local -r y={{input.v}}",
       "declare x=" + word(1) + "; local -r y=" + word(1)},
      {"after a subscript the context is back", "a[\"i]\"]=1 {{input.v}}",
       "a[\"i]\"]=1 " + word(1)},
      // commands read with bash's prefixes, quotes and groups, used safely
      {"a command name from a variable", "$CMD {{input.v}}; \"$@\" {{input.v}}",
       "$CMD " + word(1) + "; \"$@\" " + word(1)},
      {"after assignments", "X=1 Y=\"a b\" echo {{input.v}}", "X=1 Y=\"a b\" echo " + word(1)},
      {"time -p", "time -p echo {{input.v}}", "time -p echo " + word(1)},
      {"a group", "{ echo {{input.v}}; }", "{ echo " + word(1) + "; }"},
      {"a function body", "function f { echo {{input.v}}; }; f",
       "function f { echo " + word(1) + "; }; f"},
      {"coproc NAME { }", "coproc C { echo {{input.v}}; }", "coproc C { echo " + word(1) + "; }"},
      {"command -v", "command -v {{input.v}}", "command -v " + word(1)},
      {"quoted command names", "\"echo\" {{input.v}}; \\printf '%s' {{input.v}}",
       "\"echo\" " + word(1) + "; \\printf '%s' " + word(1)},
      {"names that only begin like let", "lets {{input.v}}; let_x {{input.v}}",
       "lets " + word(1) + "; let_x " + word(1)},
      {"a pattern with a slash as the command", "./*.sh {{input.v}}", "./*.sh " + word(1)},
      {"patterns and braces among arguments", "cp *.txt {a,b} {{input.v}}",
       "cp *.txt {a,b} " + word(1)},
      {"declare options without i or n", "declare -rx y={{input.v}}", "declare -rx y=" + word(1)},
      {"test without -v", "test -n {{input.v}}", "test -n " + word(1)},
      {"a line continuation inside a command", "echo \\\n {{input.v}}", "echo \\\n " + word(1)},
  };
  for (const auto& c : cases) {
    INFO(c.what << ": " << c.text);
    CHECK(check_shell_template(c.text, "run").empty());
    auto ex = expand_shell(c.text, f.scope());
    CHECK(ex.script == c.expected);
  }
}

TEST_CASE("the variables hold the values; comments and plain scripts need none",
          "[shell_template]") {
  fixture f;
  auto ex = expand_shell("echo {{input.v}} '{{outputs.a.f}}' {{input.v}} # {{input.n}}", f.scope());
  CHECK(ex.env == std::map<std::string, std::string>{{"SMITHERS_TEMPLATE_1", "x"},
                                                     {"SMITHERS_TEMPLATE_2", "out"}});
  auto plain = expand_shell("echo '{' }} $x", f.scope());
  CHECK(plain.script == "echo '{' }} $x");
  CHECK(plain.env.empty());
}

TEST_CASE("contexts where no spelling is safe are refused with what to write instead",
          "[shell_template]") {
  fixture f;
  struct case_t {
    const char* what;
    std::string text;
    std::string message;
  };
  const std::string param =
      R"(template "{{input.v}}" is inside a ${...} parameter expansion, where bash can run a )"
      R"(value as code (array subscripts): assign it to a variable first, e.g. )"
      R"(v={{input.v}}; echo "${x:-$v}")";
  const std::string arith =
      R"(template "{{input.n}}" is inside an arithmetic expansion $((...)), where bash runs a )"
      R"(value as code (a[$(cmd)]): assign it to a variable and check that it is a number )"
      R"(first, e.g. n={{input.n}}; case $n in ''|*[!0-9]*) exit 2;; esac; echo $((n + 1)))";
  const std::string arith_cmd =
      R"(template "{{input.n}}" is inside an arithmetic command ((...)), where bash runs a )"
      R"(value as code (a[$(cmd)]): assign it to a variable and check that it is a number )"
      R"(first, e.g. n={{input.n}}; case $n in ''|*[!0-9]*) exit 2;; esac; ((n > 1)) (for )"
      R"x(nested subshells write "( ("))x";
  const std::string quoted_heredoc =
      R"(template "{{input.v}}" is in the body of a quoted here-document (<<'EOF'), which is )"
      R"(literal text: a value could end the document and run what follows; use an unquoted )"
      R"(delimiter (<<EOF, escaping $, ` and \ of the body as \$, \` and \\), where the )"
      R"(template becomes a variable reference)";
  const std::string delim =
      R"(template "{{input.v}}" is in a here-document delimiter, which must be literal text)";
  const std::string dollar =
      R"(template "{{input.v}}" follows a "$": a value is inserted as text, never as a )"
      R"(variable name; remove the "$" (write "\$" for a literal dollar sign))";
  const std::string backslash =
      R"(template "{{input.v}}" follows a backslash, which would escape the first character )"
      R"(of what it becomes: remove the backslash)";
  const std::string ansi =
      R"(template "{{input.v}}" is inside a $'...' string: close the string before it, e.g. )"
      R"($'a\n'{{input.v}})";
  const std::string arith_old =
      R"(template "{{input.n}}" is inside a $[...] arithmetic expansion, where bash runs a )"
      R"(value as code (a[$(cmd)]): assign it to a variable and check that it is a number )"
      R"(first, e.g. n={{input.n}}; case $n in ''|*[!0-9]*) exit 2;; esac; echo $((n + 1)))";
  const std::string subscript =
      R"(template "{{input.n}}" is inside an array subscript (name[...]), where bash runs a )"
      R"(value as code (a[$(cmd)]): assign it to a variable and check that it is a number )"
      R"(first, e.g. i={{input.n}}; case $i in ''|*[!0-9]*) exit 2;; esac; a[i]=x)";
  const std::string let =
      R"(template "{{input.n}}" is in a "let" command, where bash evaluates a value as code )"
      R"((a[$(cmd)]): assign it to a variable and check that it is a number first, e.g. )"
      R"(n={{input.n}}; case $n in ''|*[!0-9]*) exit 2;; esac; let "x = n + 1")";
  const std::string test_arith =
      R"(template "{{input.n}}" is in a [[ ... ]] test with an arithmetic comparison (-eq, )"
      R"(-lt, ...) or -v, where bash evaluates a value as code (a[$(cmd)]): assign it to a )"
      R"(variable and check that it is a number first, e.g. n={{input.n}}; case $n in )"
      R"(''|*[!0-9]*) exit 2;; esac; [[ $n -gt 0 ]])";
  const std::string declare_i =
      R"(template "{{input.n}}" is in a declare, typeset, local, readonly or export command )"
      R"(with -i, where bash evaluates a value as code (a[$(cmd)]): assign it to a variable )"
      R"(and check that it is a number first, e.g. n={{input.n}}; case $n in ''|*[!0-9]*) )"
      R"(exit 2;; esac; declare -i x=$n)";
  const std::string name_arg =
      R"(template "{{input.n}}" names a variable (unset, test -v, declare -n), and bash )"
      R"(evaluates a name with a subscript as code (a[$(cmd)]): check the name first, e.g. )"
      R"(v={{input.n}}; case $v in ''|[0-9]*|*[!A-Za-z0-9_]*) exit 2;; esac; unset "$v")";
  const std::vector<case_t> cases = {
      {"${…} default", "echo ${x:-{{input.v}}}", param},
      {"${…} inside double quotes", "echo \"${x:-{{input.v}}}\"", param},
      {"double quotes inside ${…}", "echo ${x:-\"{{input.v}}\"}", param},
      {"single quotes inside ${…}", "echo ${x:-'{{input.v}}'}", param},
      {"$( ) inside ${…}", "echo ${x:-$(echo {{input.v}})}", param},
      {"backticks inside ${…}", "echo ${x:-`echo {{input.v}}`}", param},
      {"an array subscript", "echo ${a[{{input.v}}]}", param},
      {"${ directly before", "echo ${ {{input.v}} }", param},
      {"$((…))", "echo $(( {{input.n}} + 1 ))", arith},
      {"$((…)) inside double quotes", "echo \"$(( {{input.n}} + 1 ))\"", arith},
      {"$( ) inside $((…))", "echo $(( $(echo {{input.n}}) + 1 ))", arith},
      {"double quotes inside $((…))", "echo $(( \"{{input.n}}\" + 1 ))", arith},
      {"((…)) command", "((x = {{input.n}}))", arith_cmd},
      {"((…)) after &&", "true && (( {{input.n}} > 1 )) && echo", arith_cmd},
      {"<<'EOF'", "cat <<'EOF'\n{{input.v}}\nEOF", quoted_heredoc},
      {"<<\"EOF\"", "cat <<\"EOF\"\n{{input.v}}\nEOF", quoted_heredoc},
      {"<<\\EOF", "cat <<\\EOF\n{{input.v}}\nEOF", quoted_heredoc},
      {"<<E'O'F", "cat <<E'O'F\n{{input.v}}\nEOF", quoted_heredoc},
      {"<<-'EOF'", "cat <<-'EOF'\n\t{{input.v}}\n\tEOF", quoted_heredoc},
      {"a quoted here-document inside $( )", "x=$(cat <<'EOF'\n{{input.v}}\nEOF\n)",
       quoted_heredoc},
      {"here-document delimiter", "cat <<{{input.v}}\nx\n", delim},
      {"quoted here-document delimiter", "cat <<'{{input.v}}'\nx\n", delim},
      {"after $", "echo ${{input.v}}", dollar},
      {"after $ inside double quotes", "echo \"${{input.v}}\"", dollar},
      {"after $ in a here-document", "cat <<EOF\n${{input.v}}\nEOF", dollar},
      {"after a backslash", "echo \\{{input.v}}", backslash},
      {"after a backslash inside double quotes", "echo \"\\{{input.v}}\"", backslash},
      {"after a backslash in a here-document", "cat <<EOF\n\\{{input.v}}\nEOF", backslash},
      {"$'…'", "echo $'a{{input.v}}'", ansi},
      {"$[…]", "echo $[ {{input.n}} + 1 ]", arith_old},
      {"$[…] inside double quotes", "echo \"$[{{input.n}}]\"", arith_old},
      {"an array subscript assigned", "a[{{input.n}}]=1", subscript},
      {"an array subscript after other text", "x=1 a[1+{{input.n}}]=1", subscript},
      {"an array subscript named to unset", "unset a[{{input.n}}]", subscript},
      {"a compound array assignment", "a=([{{input.n}}]=1)", subscript},
      {"quotes inside a subscript", "a[\"{{input.n}}\"]=1", subscript},
      {"for ((…))", "for ((i = 0; i < {{input.n}}; i++)); do :; done", arith_cmd},
      {"let", "let x={{input.n}}+1", let},
      {"let with a quoted argument", "let \"x = {{input.n}}\"", let},
      {"$( ) inside let", "let x=$(echo {{input.n}})", let},
      {"let inside $( )", "echo \"$(let x={{input.n}}; echo $x)\"", let},
      {"[[ -eq ]]", "[[ {{input.n}} -eq 1 ]]", test_arith},
      {"[[ -gt ]] after &&", "if [[ -n x && {{input.n}} -gt 1 ]]; then :; fi", test_arith},
      {"[[ -v ]]", "[[ -v {{input.n}} ]]", test_arith},
      {"$( ) inside [[ -lt ]]", "[[ $(echo {{input.n}}) -lt 1 ]]", test_arith},
      {"declare -i", "declare -i x={{input.n}}", declare_i},
      {"local -ri", "f() { local -ri x=\"{{input.n}}\"; }", declare_i},
      {"unset", "unset {{input.n}}", name_arg},
      {"test -v", "test -v {{input.n}}", name_arg},
      {"[ -v ]", "[ -v \"{{input.n}}\" ]", name_arg},
  };
  for (const auto& c : cases) {
    INFO(c.what << ": " << c.text);
    auto ps = check_shell_template(c.text, "root.run");
    REQUIRE(ps.size() == 1);
    CHECK(ps[0].path == "root.run");
    CHECK(ps[0].message == c.message);
    // expand_shell refuses them too (a workflow that skipped validation)
    auto e = error_of([&] { expand_shell(c.text, f.scope()); });
    CHECK(e.code == errc::invalid_workflow);
    CHECK(e.message == c.message);
  }
}

TEST_CASE("every refused template is reported; syntax errors are left to check_template",
          "[shell_template]") {
  auto ps = check_shell_template("echo ${a:-{{input.v}}} {{input.w}} $(({{input.n}}))", "p");
  REQUIRE(ps.size() == 2);
  CHECK(ps[0].message.find("\"{{input.v}}\" is inside a ${...}") != std::string::npos);
  CHECK(ps[1].message.find("\"{{input.n}}\" is inside an arithmetic expansion") !=
        std::string::npos);
  CHECK(check_shell_template("echo {{input.v", "p").empty());
  CHECK(check_shell_template("echo $((1 + 2))", "p").empty());
  // deeper than the lexer follows: refused, not guessed
  std::string deep = "echo ";
  for (int i = 0; i < 200; ++i)
    deep += "\"$(";
  deep += "{{input.v}}";
  auto too_deep = check_shell_template(deep, "p");
  REQUIRE(too_deep.size() == 1);
  CHECK(too_deep[0].message.find("levels deep") != std::string::npos);
}

TEST_CASE("a value with a NUL byte is an error naming the template, never cut short",
          "[shell_template]") {
  json input = {{"dir", std::string("/tmp/work\0", 10)}, {"ok", "fine"}};
  std::unordered_map<std::string, json> outputs = {{"a", {{"f", std::string("a\0b", 3)}}}};
  json locals = {{"item", std::string("\0", 1)}};
  template_scope s;
  s.input = &input;
  s.outputs = &outputs;
  s.locals = &locals;
  s.run_id = std::string("r\0", 2);
  struct case_t {
    std::string text;
    const char* code;
    std::string tmpl;
  };
  const std::vector<case_t> cases = {
      {"{{input.dir}}/cache", errc::invalid_input, "{{input.dir}}"},
      {"x {{outputs.a.f}}", errc::invalid_output, "{{outputs.a.f}}"},
      {"{{item}}", errc::invalid_argument, "{{item}}"},
      {"{{run_id}}", errc::invalid_argument, "{{run_id}}"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    std::string message = "template \"" + c.tmpl +
                          "\": the value contains a NUL byte, which no argument or environment "
                          "variable can hold";
    for (bool shell : {false, true}) {
      auto e = error_of([&] {
        if (shell)
          expand_shell("rm -rf " + c.text, s);
        else
          expand(c.text, s);
      });
      CHECK(e.code == c.code);
      CHECK(e.message == message);
      CHECK(e.details["template"] == c.tmpl);
    }
  }
  // a NUL in a value that is not substituted does no harm
  CHECK(expand("{{input.ok}}", s) == "fine");
  // a template in a comment is not looked up
  CHECK(expand_shell("echo {{input.ok}} # {{input.dir}}", s).env.size() == 1);
}

TEST_CASE("a value too large for one argument or environment variable is refused",
          "[shell_template]") {
  const std::size_t max = limits::max_arg_string_bytes; // with the NUL
  auto scope_with = [](json& input) {
    template_scope s;
    s.input = &input;
    return s;
  };
  SECTION("an argument: max - 1 bytes fit, max do not") {
    json input = {{"big", std::string(max - 1, 'a')}};
    CHECK(expand("{{input.big}}", scope_with(input)).size() == max - 1);
    auto e = error_of([&] { expand("x{{input.big}}", scope_with(input)); });
    CHECK(e.code == errc::invalid_argument);
    CHECK(e.message ==
          "template \"{{input.big}}\": the value makes an argument or environment variable of " +
              std::to_string(max + 1) +
              " bytes (with its terminating NUL); Linux allows at most 131072: pass large values "
              "on stdin instead (the command receives {input, needs} as JSON on stdin)");
  }
  SECTION("an env value counts its NAME=") {
    json input = {{"big", std::string(max - 1 - 4, 'a')}};
    CHECK_NOTHROW(expand("{{input.big}}", scope_with(input), 4)); // "ABC="
    CHECK(error_of([&] { expand("{{input.big}}", scope_with(input), 5); }).code ==
          errc::invalid_argument);
  }
  SECTION("a script variable counts SMITHERS_TEMPLATE_<n>=") {
    const std::size_t name = std::string("SMITHERS_TEMPLATE_1=").size();
    json fits = {{"big", std::string(max - 1 - name, 'a')}};
    CHECK(
        expand_shell("echo {{input.big}}", scope_with(fits)).env.at("SMITHERS_TEMPLATE_1").size() ==
        max - 1 - name);
    json over = {{"big", std::string(max - name, 'a')}};
    auto e = error_of([&] { expand_shell("echo {{input.big}}", scope_with(over)); });
    CHECK(e.code == errc::invalid_argument);
    CHECK(e.message.find("pass large values on stdin") != std::string::npos);
  }
  SECTION("many large values each fit; the script itself stays small") {
    json input = {{"a", std::string(100000, 'a')}, {"b", std::string(100000, 'b')}};
    auto ex = expand_shell("echo {{input.a}} {{input.b}}", scope_with(input));
    CHECK(ex.env.size() == 2);
    CHECK(ex.script.size() < 100);
  }
}

TEST_CASE("the element after a shell's -c is its script; other arguments are not",
          "[shell_template]") {
  using argv_t = std::vector<std::string>;
  struct case_t {
    argv_t argv;
    std::size_t script; // index of the script, or 0 for none
  };
  const std::vector<case_t> cases = {
      {{"sh", "-c", "s"}, 2},
      {{"/bin/sh", "-c", "s", "a0", "a1"}, 2},
      {{"/usr/bin/bash", "-ec", "s"}, 2},
      {{"bash", "-xec", "s"}, 2},
      {{"dash", "-c", "s"}, 2},
      {{"zsh", "-c", "s"}, 2},
      {{"ksh", "-c", "s"}, 2},
      {{"ash", "-c", "s"}, 2},
      {{"bash", "-c", "-e", "s"}, 3},
      {{"bash", "-o", "pipefail", "-c", "s"}, 4},
      {{"bash", "-eo", "pipefail", "-c", "s"}, 4},
      {{"bash", "--norc", "-c", "s"}, 3},
      {{"bash", "--rcfile", "f", "-c", "s"}, 4},
      {{"sh", "-c", "--", "s"}, 3},
      {{"sh", "-ce", "s"}, 2},
      {{"sh", "script.sh", "arg"}, 0},
      {{"sh", "-e", "script.sh"}, 0},
      {{"sh"}, 0},
      {{"sh", "-c"}, 0},
      {{"echo", "-c", "s"}, 0},
      {{"python3", "-c", "s"}, 0},
      {{"shx", "-c", "s"}, 0},
      {{"env", "sh", "-c", "s"}, 0},
  };
  for (const auto& c : cases) {
    std::string shown;
    for (const auto& a : c.argv)
      shown += a + " ";
    INFO(shown);
    for (std::size_t i = 0; i < c.argv.size() + 1; ++i)
      CHECK(is_shell_script_arg(c.argv, i) == (c.script != 0 && i == c.script));
  }
}

TEST_CASE("validation refuses unsafe templates, NUL bytes and reserved names with their path",
          "[shell_template]") {
  auto wf = [](json task) {
    task["task"] = "t";
    return json{{"name", "w"}, {"root", task}};
  };
  const std::string nul("a\0b", 3);
  struct case_t {
    const char* what;
    json doc;
    std::string path;
    std::string message_part;
  };
  const std::vector<case_t> cases = {
      {"${…} in a run string", wf({{"run", "echo ${x:-{{input.v}}}"}}), "root.run",
       "is inside a ${...} parameter expansion"},
      {"$((…)) in sh -c", wf({{"run", {"sh", "-c", "echo $(( {{input.n}} ))"}}}), "root.run[2]",
       "is inside an arithmetic expansion"},
      {"quoted here-document in sh -ec", wf({{"run", {"sh", "-ec", "cat <<'E'\n{{input.v}}\nE"}}}),
       "root.run[2]", "quoted here-document"},
      {"any template in a bash script", wf({{"run", {"bash", "-ec", "echo \"{{input.v}}\""}}}),
       "root.run[2]", "is in a bash script"},
      {"a template in a shell's options", wf({{"run", {"bash", "-{{input.o}}", "echo hi"}}}),
       "root.run[1]", "is among the options of bash"},
      {"NUL in a run string", wf({{"run", "echo " + nul}}), "root.run", "contains a NUL byte"},
      {"NUL in an argv element", wf({{"run", {"echo", nul}}}), "root.run[1]",
       "contains a NUL byte"},
      {"NUL in an env value", wf({{"run", "true"}, {"env", {{"X", nul}}}}), "root.env.X",
       "contains a NUL byte"},
      {"NUL in an env name", wf({{"run", "true"}, {"env", {{nul, "v"}}}}), "root.env",
       "name contains a NUL byte"},
      {"NUL in cwd", wf({{"run", "true"}, {"cwd", nul}}), "root.cwd", "contains a NUL byte"},
      {"reserved env name", wf({{"run", "true"}, {"env", {{"SMITHERS_TEMPLATE_1", "v"}}}}),
       "root.env.SMITHERS_TEMPLATE_1", "names starting with SMITHERS_TEMPLATE_ are reserved"},
      {"a literal too long for one argument",
       wf({{"run", std::string(limits::max_arg_string_bytes, 'a')}}), "root.run",
       "is 131072 bytes; one argument or environment variable holds at most 131071"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    auto res = parse_workflow(c.doc);
    CHECK_FALSE(res.wf);
    INFO("problems: " << join(res.errors));
    bool found = false;
    for (const auto& p : res.errors)
      if (p.path == c.path && p.message.find(c.message_part) != std::string::npos) found = true;
    CHECK(found);
  }
  // argv elements that are not scripts take templates anywhere; the same
  // script text is fine as a positional argument
  CHECK(parse_workflow(wf({{"run", {"sh", "-c", "echo \"$1\"", "sh", "${x:-{{input.v}}}"}}})).wf);
  CHECK(parse_workflow(wf({{"run", {"bash", "-c", "echo \"$1\"", "bash", "{{input.v}}"}}})).wf);
  CHECK(parse_workflow(wf({{"run", {"printf", "%s", "$(( {{input.n}} ))"}}})).wf);
  CHECK(parse_workflow(wf({{"run", "echo '{{input.v}}' \"{{input.v}}\" {{input.v}}"}})).wf);
}

TEST_CASE("the script of a shell that is not a plain POSIX shell takes no template",
          "[shell_template]") {
  fixture f;
  auto message = [](const std::string& name, const std::string& t) {
    return "template \"" + t + "\" is in a " + name + " script: " + name +
           " can run a value as code in arithmetic (let, declare -i, [[ -eq ]], array "
           "subscripts, ...), which no reader of the script can rule out; pass the value as an "
           "argument after the script and use \"$1\": [\"" +
           name + "\", \"-c\", \"echo \\\"$1\\\"\", \"" + name + "\", \"" + t +
           "\"], or use a \"run\" string (/bin/sh)";
  };
  CHECK(message("bash", "{{input.n}}") ==
        R"(template "{{input.n}}" is in a bash script: bash can run a value as code in )"
        R"(arithmetic (let, declare -i, [[ -eq ]], array subscripts, ...), which no reader of )"
        R"(the script can rule out; pass the value as an argument after the script and use )"
        R"("$1": ["bash", "-c", "echo \"$1\"", "bash", "{{input.n}}"], or use a "run" string )"
        R"((/bin/sh))");
  const std::vector<std::pair<std::string, std::string>> shells = {
      {"bash", "bash"}, {"/usr/bin/bash", "bash"}, {"rbash", "rbash"}, {"zsh", "zsh"},
      {"ksh", "ksh"},   {"ksh93", "ksh93"},        {"mksh", "mksh"},   {"yash", "yash"},
  };
  for (const auto& [program, name] : shells) {
    INFO(program);
    CHECK_FALSE(is_plain_posix_shell(program));
    // anywhere: a safe place for sh, a comment, a refused place
    auto ps = check_shell_template("echo \"{{input.v}}\" # {{ input.w }}\nlet x={{input.n}}",
                                   "root.run[2]", program);
    REQUIRE(ps.size() == 3);
    CHECK(ps[0] == problem{"root.run[2]", message(name, "{{input.v}}")});
    CHECK(ps[1] == problem{"root.run[2]", message(name, "{{input.w}}")});
    CHECK(ps[2] == problem{"root.run[2]", message(name, "{{input.n}}")});
    auto e = error_of([&] { expand_shell("printf '%s' '{{input.v}}'", f.scope(), program); });
    CHECK(e.code == errc::invalid_workflow);
    CHECK(e.message == message(name, "{{input.v}}"));
    CHECK(e.details["template"] == "{{input.v}}");
    // no template, nothing to refuse
    CHECK(check_shell_template("echo $((1 + 2))", "p", program).empty());
    CHECK(expand_shell("echo $((1 + 2))", f.scope(), program).script == "echo $((1 + 2))");
  }
  for (const char* program : {"sh", "/bin/sh", "dash", "/usr/bin/dash", "ash", "posh"}) {
    INFO(program);
    CHECK(is_plain_posix_shell(program));
    CHECK(check_shell_template("echo \"{{input.v}}\"", "p", program).empty());
    CHECK(expand_shell("echo \"{{input.v}}\"", f.scope(), program).script ==
          "echo \"" + dq(1) + "\"");
  }
  // a run string is read for /bin/sh
  CHECK(check_shell_template("echo {{input.v}}", "p").empty());
  // through an argv: the script is refused, values after it are arguments
  auto e = error_of([&] { expand_argv({"bash", "-ec", "echo {{input.v}}"}, f.scope()); });
  CHECK(e.message == message("bash", "{{input.v}}"));
  auto ex = expand_argv({"bash", "-c", "echo \"$1\"", "bash", "{{input.v}}"}, f.scope());
  CHECK(ex.argv == std::vector<std::string>{"bash", "-c", "echo \"$1\"", "bash", "x"});
  CHECK(ex.env.empty());
}

TEST_CASE("a template among a shell's options is refused: which argument is the script must be "
          "known",
          "[shell_template]") {
  fixture f;
  using argv_t = std::vector<std::string>;
  struct case_t {
    argv_t argv;
    std::size_t refused; // the argument refused, 0 for none
  };
  const std::vector<case_t> cases = {
      {{"bash", "-{{input.o}}", "echo {{input.x}}"}, 1}, // o = "ec" made the next a script
      {{"sh", "-e{{input.o}}", "echo"}, 1},
      {{"bash", "--{{input.o}}", "-c", "s"}, 1},
      {{"sh", "+{{input.o}}", "-c", "s"}, 1},
      {{"bash", "-o", "{{input.o}}", "-c", "s"}, 2},
      {{"bash", "-eo", "pipe{{input.o}}", "-c", "s"}, 2},
      {{"bash", "-O", "{{input.o}}", "-c", "s"}, 2},
      {{"bash", "--rcfile", "{{input.f}}", "-c", "s"}, 2},
      {{"sh", "-c", "-{{input.o}}", "s"}, 2},
      {{"/bin/sh", "{{input.f}}", "echo {{input.x}}"}, 1}, // f = "-c" made the next a script
      {{"sh", "-e", "{{input.f}}"}, 2},
      {{"dash", "{{input.f}}"}, 1},
      {{"zsh", "-{{input.o}}"}, 1},
      // none: literal options, the script, arguments after the first operand
      {{"sh", "-c", "{{input.s}}"}, 0},
      {{"sh", "-c", "s", "-{{input.a}}", "{{input.b}}"}, 0},
      {{"bash", "-o", "pipefail", "-c", "s", "{{input.a}}"}, 0},
      {{"sh", "--", "{{input.f}}", "-{{input.a}}"}, 0},
      {{"sh", "./{{input.f}}", "-{{input.a}}"}, 0},
      {{"sh", "script.sh", "-{{input.a}}"}, 0},
      {{"env", "-{{input.a}}", "sh"}, 0},
      {{"{{input.p}}", "-{{input.o}}"}, 0},
      {{"sh"}, 0},
      {{}, 0},
  };
  for (const auto& c : cases) {
    std::string shown;
    for (const auto& a : c.argv)
      shown += a + " ";
    INFO(shown);
    auto p = check_shell_options(c.argv);
    CHECK(p.index == c.refused);
    CHECK(p.message.empty() == (c.refused == 0));
    if (c.refused) {
      // then no argument is taken for the script
      for (std::size_t i = 0; i < c.argv.size(); ++i)
        CHECK_FALSE(is_shell_script_arg(c.argv, i));
      json input = {{"o", "ec"}, {"x", "$(touch PWNED)"}, {"f", "-c"}, {"s", "s"}};
      template_scope s;
      s.input = &input;
      auto e = error_of([&] { expand_argv(c.argv, s); });
      CHECK(e.code == errc::invalid_workflow);
      CHECK(e.message == p.message);
    }
  }
  CHECK(check_shell_options({"bash", "-{{ input.o }}", "echo {{input.x}}"}).message ==
        R"(template "{{input.o}}" is among the options of bash, or could be read as one (a )"
        R"(value starting with "-" or "+"): options must be literal, so that which argument is )"
        R"(the script is known; pass the value as an argument after the script and use "$1": )"
        R"(["bash", "-c", "echo \"$1\"", "bash", "{{input.o}}"] (a script file named by a )"
        R"(template goes after "--": ["bash", "--", "{{input.o}}"]))");
  CHECK(check_shell_options({"/bin/sh", "{{input.f}}"})
            .message.find(R"(["sh", "--", "{{input.f}}"])") != std::string::npos);
  // validation: the path of the argument, and only that problem
  json doc = {{"name", "w"},
              {"root", {{"task", "t"}, {"run", {"bash", "-{{input.o}}", "echo {{input.x}}"}}}}};
  auto res = parse_workflow(doc);
  CHECK_FALSE(res.wf);
  REQUIRE(res.errors.size() == 1);
  CHECK(res.errors[0].path == "root.run[1]");
  CHECK(res.errors[0].message ==
        check_shell_options(doc["root"]["run"].get<std::vector<std::string>>()).message);
}

// ------------------------------------------------------------ real shells

namespace {

struct context {
  const char* name;
  const char* script; // prints the value of {{input.v}}, wrapped in prefix/suffix
  std::string prefix, suffix;
  bool bash_only = false;
};

// Each context prints the value exactly (printf '%s', and no word splitting
// of a command substitution's result), so a test sees both safety and
// fidelity.
const std::vector<context> contexts = {
    {"unquoted", "printf '%s' {{input.v}}", "", ""},
    {"part of a word", "printf '%s' pre{{input.v}}post", "pre", "post"},
    {"single quotes", "printf '%s' 'pre {{input.v}} post'", "pre ", " post"},
    {"double quotes", "printf '%s' \"pre {{input.v}} post\"", "pre ", " post"},
    {"unquoted here-document", "cat <<EOF\npre {{input.v}}\nEOF", "pre ", "\n"},
    {"<<- here-document", "cat <<-EOF\n\t{{input.v}}\n\tEOF", "", "\n"},
    {"here-document in $( )", "x=$(cat <<EOF\n{{input.v}}.\nEOF\n); printf '%s' \"$x\"", "", "."},
    {"backticks unquoted", "X=`printf '%s' {{input.v}}`; printf '%s' \"$X\"", "", ""},
    {"backticks inside double quotes", "printf '%s' \"`printf '%s' {{input.v}}`\"", "", ""},
    {"escaped quotes in backticks in double quotes",
     "printf '%s' \"`printf '%s' \\\"{{input.v}}\\\"`\"", "", ""},
    {"nested backticks", "X=`printf '%s' \"\\`printf '%s' {{input.v}}\\`\"`; printf '%s' \"$X\"",
     "", ""},
    {"$( ) unquoted", "X=$(printf '%s' {{input.v}}); printf '%s' \"$X\"", "", ""},
    {"$( ) inside double quotes", "printf '%s' \"$(printf '%s' {{input.v}})\"", "", ""},
    {"nested $( \"$( )\" )", "printf '%s' \"$(printf '%s' \"$(printf '%s' \"{{input.v}}\")\")\"",
     "", ""},
    {"$( ) with a case", "printf '%s' \"$(case a in a) printf '%s' {{input.v}};; esac)\"", "", ""},
    {"assignment", "X={{input.v}}; printf %s \"$X\"", "", ""},
    {"case word", "case {{input.v}} in *) printf '%s' '{{input.v}}';; esac", "", ""},
    {"comment", "printf '%s' \"{{input.v}}\" # {{input.v}} $(touch PWNED)", "", ""},
    {"single quotes in $( ) in double quotes", "printf '%s' \"$(printf '%s' 'a{{input.v}}b')\"",
     "a", "b"},
    {"here-document in double-quoted $( )", "printf '%s' \"$(cat <<EOF\n{{input.v}}.\nEOF\n)\"", "",
     "."},
    {"here-document in backticks", "X=`cat <<EOF\n{{input.v}}.\nEOF\n`; printf '%s' \"$X\"", "",
     "."},
    {"test command", "[ {{input.v}} = '{{input.v}}' ] && printf '%s' \"{{input.v}}\"", "", ""},
    {"here-string", "cat <<<{{input.v}}", "", "\n", true},
    {"[[ ]]", "[[ {{input.v}} == \"{{input.v}}\" ]] && printf '%s' {{input.v}}", "", "", true},
    {"array element", "a[0]={{input.v}}; printf '%s' \"${a[0]}\"", "", "", true},
    {"local", "f() { local y={{input.v}}; printf '%s' \"$y\"; }; f", "", ""},
    {"declare", "declare x={{input.v}}; printf '%s' \"$x\"", "", "", true},
    {"[[ ]] with && and a string test",
     "[[ -n x && {{input.v}} == '{{input.v}}' ]] && printf '%s' {{input.v}}", "", "", true},
    {"$\"…\"", "printf '%s' $\"{{input.v}}\"", "", "", true},
    {"after an assignment prefix", "X=1 printf '%s' {{input.v}}", "", ""},
    {"a group", "{ printf '%s' {{input.v}}; }", "", ""},
    {"a quoted command name", "\"printf\" '%s' {{input.v}}", "", ""},
    {"command", "command printf '%s' {{input.v}}", "", ""},
    {"a function body", "function f { printf '%s' {{input.v}}; }; f", "", "", true},
};

const std::vector<std::string> hostile = {
    "\"; touch PWNED; \"",
    "$(touch PWNED)",
    "`touch PWNED`",
    "'; touch PWNED; '",
    "\\\"; touch PWNED #",
    "trailing backslash\\",
    "\\",
    "\ntouch PWNED",
    "x\nEOF\ntouch PWNED\nEOF\ny",
    "EOF",
    "*",
    "-rf",
    "-n",
    "$HOME",
    "${IFS}",
    "%s",
    "'\"'\"'",
    "\"$(touch PWNED)\"",
    "')$(touch PWNED)'",
    "a[$(touch PWNED)]",
    "$((1+1))",
    "}",
    ")",
    "`",
    "'",
    "\"",
    "  two  spaces\tand tab  ",
    "",
    "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac",
    "{{input.v}}",
    "${SMITHERS_TEMPLATE_1}",
};

std::string printable(const std::string& s) {
  return json(s).dump();
}

} // namespace

TEST_CASE("hostile values through real shells: nothing runs, the value arrives exactly",
          "[shell_template]") {
  std::vector<std::string> shells = {"/bin/sh"};
  for (const char* extra : {"/bin/bash", "/bin/dash"})
    if (has_shell(extra)) shells.emplace_back(extra);
  test_support::temp_dir dir;
  for (const auto& shell : shells) {
    bool is_bash = shell == "/bin/bash";
    for (const auto& c : contexts) {
      if (c.bash_only && !is_bash) continue;
      for (const auto& value : hostile) {
        INFO(shell << " | " << c.name << " | value " << printable(value));
        json input = {{"v", value}};
        template_scope s;
        s.input = &input;
        auto ex = expand_shell(c.script, s);
        INFO("script: " << ex.script);
        smithers::util::subprocess_request req;
        req.argv = {shell, "-c", ex.script};
        req.extra_env = ex.env;
        req.cwd = dir.path();
        req.timeout = std::chrono::seconds(20);
        auto res = smithers::util::run_subprocess(req);
        INFO("stderr: " << res.err);
        CHECK(res.spawn_error.empty());
        CHECK(res.exit_code == 0);
        CHECK(printable(res.out) == printable(c.prefix + value + c.suffix));
        CHECK_FALSE(std::filesystem::exists(dir.file("PWNED")));
        std::filesystem::remove(dir.file("PWNED"));
      }
    }
  }
}

TEST_CASE("an argv shell script gets variables too; its positional arguments stay verbatim",
          "[shell_template]") {
  test_support::temp_dir dir;
  json input = {{"v", "$(touch PWNED)\"'`touch PWNED`a[$(touch PWNED)]"}};
  template_scope s;
  s.input = &input;
  const std::string v = input["v"];
  std::vector<std::vector<std::string>> commands = {
      {"sh", "-c", "printf '%s|%s' \"{{input.v}}\" \"$1\"", "zero", "{{input.v}}"}};
  // bash takes values only as arguments
  if (has_shell("/bin/bash"))
    commands.push_back({"/bin/bash", "-c", "printf '%s|%s' \"$1\" \"$1\"", "zero", "{{input.v}}"});
  for (const auto& argv : commands) {
    INFO(argv[0]);
    auto ex = expand_argv(argv, s);
    CHECK(ex.argv[4] == v);
    smithers::util::subprocess_request req;
    req.argv = ex.argv;
    req.extra_env = ex.env;
    req.cwd = dir.path();
    auto res = smithers::util::run_subprocess(req);
    CHECK(res.exit_code == 0);
    CHECK(res.out == v + "|" + v);
    CHECK_FALSE(std::filesystem::exists(dir.file("PWNED")));
  }
}

namespace {

// Scripts where bash evaluates a value as code (a[$(cmd)] runs cmd), each
// with what its refusal says in a "run" string or sh script (in a bash
// script every template is refused).
struct reproduction {
  const char* what;
  std::string script;
  std::string refusal; // part of the message
};

const std::string let_refusal = "is in a \"let\" command";
const std::string declare_refusal = "is in a declare, typeset, local, readonly or export command";
const std::string test_refusal = "is in a [[ ... ]] test with an arithmetic comparison";
const std::string name_refusal = "names a variable (unset, test -v, declare -n)";
const std::string computed_refusal = "is in a command whose name bash makes from a brace";

const std::vector<reproduction> reproductions = {
    // the body of `function f { … }`
    {"function body: let", "function f { let t={{input.n}}+1; }; f", let_refusal},
    {"function body: [[ -eq ]]", "function f { [[ {{input.n}} -eq 1 ]]; }; f", test_refusal},
    {"function body: declare -i", "function f { declare -i n={{input.n}}; }; f", declare_refusal},
    {"function body after a newline", "function f\n{ let t={{input.n}}+1; }\nf", let_refusal},
    {"function with a compound command", "function f if let n={{input.n}}; then :; fi; f",
     let_refusal},
    // prefixes
    {"assignment prefix: let", "LC_ALL=C let t={{input.n}}+1", let_refusal},
    {"assignment prefix: declare -i", "X=1 declare -i n={{input.n}}", declare_refusal},
    {"time -p", "time -p let n={{input.n}}", let_refusal},
    {"time -p --", "time -p -- let n={{input.n}}", let_refusal},
    {"time ! ", "time ! let n={{input.n}}", let_refusal},
    {"coproc", "coproc let n={{input.n}}; wait", let_refusal},
    {"coproc NAME { }", "coproc C { let n={{input.n}}; }; wait", let_refusal},
    {"coproc NAME while", "coproc C while let n={{input.n}}; do break; done; wait", let_refusal},
    {"coproc NAME [[ ]]", "coproc C [[ 1 -eq {{input.n}} ]]; wait", test_refusal},
    {"command", "command let n={{input.n}}", let_refusal},
    {"command -p", "X=1 command -p let n={{input.n}}", let_refusal},
    {"builtin", "builtin declare -i n={{input.n}}", declare_refusal},
    // quoted or escaped names and options
    {"\"let\"", "\"let\" n={{input.n}}", let_refusal},
    {"'let'", "'let' n={{input.n}}", let_refusal},
    {"le\"\"t", "le\"\"t n={{input.n}}", let_refusal},
    {"\\let", "\\let n={{input.n}}", let_refusal},
    {"$'let'", "$'let' n={{input.n}}", let_refusal},
    {"$'\\x6cet'", "$'\\x6c\\145t' n={{input.n}}", let_refusal},
    {"$\"let\"", "$\"let\" n={{input.n}}", let_refusal},
    {"'declare' -i", "'declare' -i n={{input.n}}", declare_refusal},
    {"declare \"-i\"", "declare \"-i\" n={{input.n}}", declare_refusal},
    {"declare '-i'", "declare '-i' n={{input.n}}", declare_refusal},
    {"declare \\-i", "declare \\-i n={{input.n}}", declare_refusal},
    {"test \"-v\"", "test \"-v\" {{input.n}}", name_refusal},
    {"test -\\v", "test -\\v {{input.n}}", name_refusal},
    {"[ \"-v\" ]", "[ \"-v\" {{input.n}} ]", name_refusal},
    // line continuations
    {"let\\<newline>", "let\\\n n={{input.n}}", let_refusal},
    {"l\\<newline>et", "l\\\net n={{input.n}}", let_refusal},
    {"declare -i\\<newline>", "declare -i\\\n n={{input.n}}", declare_refusal},
    {"[[ -eq\\<newline> ]]", "[[ 1 -eq\\\n {{input.n}} ]]", test_refusal},
    {"i\\<newline>f", "i\\\nf let n={{input.n}}; then :; fi", let_refusal},
    // names
    {"declare -n", "declare -n r={{input.n}}; : \"$r\"", name_refusal},
    {"local -n", "f() { local -n r={{input.n}}; : \"$r\"; }; f", name_refusal},
    // words bash makes from a brace expansion or a pattern
    {"brace expansion as the command", "{let,n={{input.n}}}", computed_refusal},
    {"pattern as the command (a file named let)", "l?t n={{input.n}}", computed_refusal},
    {"brace expansion among declare's options", "declare {-i,n={{input.n}}}", declare_refusal},
    {"brace expansion among test's arguments", "test {-v,{{input.n}}}", name_refusal},
};

} // namespace

TEST_CASE("where bash evaluates a value as code: refused in a bash script and in a run string",
          "[shell_template]") {
  fixture f;
  test_support::temp_dir dir;
  std::ofstream(dir.file("let")).put('\n'); // for the pattern l?t
  for (const auto& r : reproductions) {
    INFO(r.what << ": " << r.script);
    // a run string, an sh script: read as bash would (/bin/sh is bash elsewhere)
    auto ps = check_shell_template(r.script, "root.run");
    CHECK(ps.size() == 1);
    if (ps.size() == 1) {
      CHECK(ps[0].message.find(r.refusal) != std::string::npos);
      auto e = error_of([&] { expand_shell(r.script, f.scope()); });
      CHECK(e.code == errc::invalid_workflow);
      CHECK(e.message == ps[0].message);
    }
    // a bash script (argv): every template
    json doc = {{"name", "w"}, {"root", {{"task", "t"}, {"run", {"bash", "-c", r.script}}}}};
    auto res = parse_workflow(doc);
    CHECK_FALSE(res.wf);
    CHECK(res.errors.size() == 1);
    if (res.errors.size() == 1) {
      CHECK(res.errors[0].path == "root.run[2]");
      CHECK(res.errors[0].message.find("template \"{{input.n}}\" is in a bash script") == 0);
    }
    // each is real: spelled as a plain variable reference, bash runs the value
    if (!has_shell("/bin/bash")) continue;
    std::string naive = r.script;
    for (auto at = naive.find("{{input.n}}"); at != std::string::npos;
         at = naive.find("{{input.n}}"))
      naive.replace(at, 11, "\"${SMITHERS_TEMPLATE_1}\"");
    smithers::util::subprocess_request req;
    req.argv = {"/bin/bash", "-c", naive};
    req.extra_env = {{"SMITHERS_TEMPLATE_1", "a[$(touch PWNED)]"}};
    req.cwd = dir.path();
    req.timeout = std::chrono::seconds(20);
    auto run = smithers::util::run_subprocess(req);
    INFO("naive script: " << naive << "\nstderr: " << run.err);
    CHECK(std::filesystem::exists(dir.file("PWNED")));
    std::filesystem::remove(dir.file("PWNED"));
  }
}
