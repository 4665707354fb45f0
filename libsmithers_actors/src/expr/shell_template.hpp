// Templates in shell scripts (`"run": "..."`, and the script of an argv
// command like ["sh", "-c", "..."]). A value is never spliced into shell
// code: each template becomes a reference to an environment variable
// SMITHERS_TEMPLATE_<n> that holds the value, spelled for its place in the
// script, which a small lexer finds:
//
//   unquoted word (also in $(…), `…`, case words, after `=`)  "${SMITHERS_TEMPLATE_1}"
//   inside "…"                                                ${SMITHERS_TEMPLATE_1}
//   inside '…'                                                '"${SMITHERS_TEMPLATE_1}"'
//   body of an unquoted here-document (<<EOF, <<-EOF)         ${SMITHERS_TEMPLATE_1}
//   a # comment                                               left as written, not looked up
//
// Places where no spelling is safe are refused (check_shell_template):
// where bash evaluates a value as code (a[$(cmd)]): inside ${…}, $((…)),
// ((…)), $[…], an array subscript opening a word, a let command, declare -i,
// [[ … -eq … ]], a name for unset, test -v or declare -n (commands known as
// bash knows them: after quote removal, prefixes like `X=1`, `time -p`,
// `command`, and in function bodies), a command name made by a brace
// expansion or a pattern; also $'…', the body of a
// quoted here-document, a here-document delimiter, and right after "$" or a
// backslash. The lexer reads a script as bash does;
// where dash differs, dash has no context that evaluates a value.
//
// That reading covers "run" strings and the scripts of plain POSIX shells
// (sh, dash, ash, posh), where bash matters only as /bin/sh elsewhere. The
// script of any other shell (bash, zsh, ksh, ...) takes no template at all:
// such a shell evaluates values as arithmetic in too many places to rule
// out; its values go in as positional arguments after the script. And a
// shell's options must be literal, or which argument is the script is not
// known.
#pragma once

#include "expr/template.hpp"
#include "schema/problem.hpp"

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace smithers::spec {

/// The names of the variables that carry template values; a task's own env
/// may not use the prefix.
inline constexpr std::string_view shell_template_prefix = "SMITHERS_TEMPLATE_";

struct shell_expansion {
  std::string script;                     // the text, each template a variable reference
  std::map<std::string, std::string> env; // SMITHERS_TEMPLATE_<n> -> value
};

/// Expand the templates of a script as variable references. Variables are
/// numbered from 1 in order of first use; the same expression shares one.
/// `program`: the shell that runs it ("sh" for a "run" string). Throws what
/// expand() throws (TEMPLATE_MISSING_VALUE, a NUL byte, a value too large),
/// and INVALID_WORKFLOW for a template in a refused place, or anywhere in
/// the script of a shell that is not a plain POSIX shell.
shell_expansion expand_shell(std::string_view text, const template_scope& scope,
                             std::string_view program = "sh");

/// Templates in places of a script where no spelling is safe, each with
/// what to write instead. Syntax errors are check_template's.
problems check_shell_template(std::string_view text, const std::string& path,
                              std::string_view program = "sh");

/// A program that runs its -c argument as a script (sh, bash, dash, zsh,
/// ksh, ash, ... by basename).
bool is_shell_program(std::string_view program);

/// sh, dash, ash and posh (by basename): shells without arrays, whose
/// scripts may hold templates.
bool is_plain_posix_shell(std::string_view program);

/// True when argv[i] is the script of a shell started with -c (or a short
/// option cluster holding c, like -ec): the first operand after the options.
/// Arguments after it ($0, $1, ...) are not scripts.
bool is_shell_script_arg(const std::vector<std::string>& argv, std::size_t i);

/// A template among a shell's options (argv[0] a shell), or in an argument
/// a value could make an option: `index` is that argument, 0 when there is
/// none.
struct shell_option_problem {
  std::size_t index = 0;
  std::string message;
};
shell_option_problem check_shell_options(const std::vector<std::string>& argv);

struct argv_expansion {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env; // of the script, if any
};

/// An argv command's templates: its script (is_shell_script_arg) through
/// expand_shell, every other argument verbatim (expand). Throws what those
/// throw, and INVALID_WORKFLOW for check_shell_options' refusal.
argv_expansion expand_argv(const std::vector<std::string>& argv, const template_scope& scope);

} // namespace smithers::spec
