// Templates in shell scripts through the real smithers binary: hostile input
// values in each quoting context run as text and arrive exactly; contexts
// that cannot be made safe are refused before anything is written; a value
// with a NUL byte fails its task for good and runs nothing.
#include "system/cli_support.hpp"

#include <filesystem>
#include <iomanip>

using namespace smithers::system_test;
using smithers::json;

namespace {

// The hex of what a command printed, so any value fits in a JSON output.
const std::string to_hex = "od -An -v -tx1 | tr -d ' \\n'";

std::string hex_of(const std::string& s) {
  std::ostringstream out;
  for (unsigned char c : s)
    out << std::hex << std::setw(2) << std::setfill('0') << static_cast<int>(c);
  return out.str();
}

// A task whose output is {"hex": <hex of what `producer` prints>}.
json hex_task(const std::string& id, const std::string& producer) {
  return {{"task", id},
          {"run", "h=$(" + producer + " | " + to_hex + "); printf '{\"hex\": \"%s\"}' \"$h\""}};
}

struct context {
  std::string id;
  json task;
  std::string prefix, suffix; // around the value in what the task prints
};

std::vector<context> contexts() {
  std::vector<context> cs = {
      {"unquoted", hex_task("unquoted", "printf '%s' {{input.v}}"), "", ""},
      {"double", hex_task("double", "printf '%s' \"Deploying {{input.v}}\""), "Deploying ", ""},
      {"single", hex_task("single", "printf '%s' 'it is {{input.v}}'"), "it is ", ""},
      {"heredoc",
       {{"task", "heredoc"},
        {"run",
         "h=$(cat <<EOF | " + to_hex + "\n{{input.v}}\nEOF\n); printf '{\"hex\": \"%s\"}' \"$h\""}},
       "",
       "\n"},
      {"backticks", hex_task("backticks", "printf '%s' \"`printf '%s' {{input.v}}`\""), "", ""},
      {"nested",
       hex_task("nested", "printf '%s' \"$(printf '%s' \"$(printf '%s' {{input.v}})\")\""), "", ""},
      {"assignment", hex_task("assignment", "X={{input.v}}; printf '%s' \"$X\""), "", ""},
      {"argv_sh",
       {{"task", "argv_sh"},
        {"run", json::array({"sh", "-ec",
                             "h=$(printf '%s' \"{{input.v}}\" | " + to_hex +
                                 "); printf '{\"hex\": \"%s\"}' \"$h\""})}},
       "",
       ""},
      {"env",
       {{"task", "env"},
        {"env", {{"V", "{{input.v}}"}}},
        {"run", "h=$(printf '%s' \"$V\" | " + to_hex + "); printf '{\"hex\": \"%s\"}' \"$h\""}},
       "",
       ""},
  };
  // bash takes values as arguments after its script
  if (file_exists("/bin/bash"))
    cs.push_back({"bash_herestring",
                  {{"task", "bash_herestring"},
                   {"run", json::array({"bash", "-c",
                                        "h=$(cat <<<\"$1\" | " + to_hex +
                                            "); printf '{\"hex\": \"%s\"}' \"$h\"",
                                        "bash", "{{input.v}}"})}},
                  "",
                  "\n"});
  return cs;
}

json hostile_workflow() {
  json tasks = json::array();
  for (const auto& c : contexts())
    tasks.push_back(c.task);
  return {
      {"name", "shell-quoting"},
      {"input",
       {{"type", "object"}, {"required", {"v"}}, {"properties", {{"v", {{"type", "string"}}}}}}},
      {"root", {{"parallel", tasks}}}};
}

} // namespace

TEST_CASE("hostile input values run as text in every shell context and arrive exactly",
          "[system][shell]") {
  const std::vector<std::string> values = {
      "\"; touch PWNED; \" $(touch PWNED) `touch PWNED` '; touch PWNED; '",
      "\\\"; touch PWNED #\ntouch PWNED\n\\",
      "x\nEOF\ntouch PWNED\nEOF\ny",
      "* -rf $HOME ${IFS} %s '\"'\"' a[$(touch PWNED)] $((1+1))",
      "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac",
      "",
  };
  sandbox sb;
  auto wf = sb.write("wf.json", hostile_workflow());
  for (std::size_t k = 0; k < values.size(); ++k) {
    const auto& value = values[k];
    INFO("value " << json(value).dump());
    std::string run_id = "hostile-" + std::to_string(k);
    auto r = sb.cli_json({"run", wf, "--run-id", run_id, "--input", json{{"v", value}}.dump()});
    INFO(r);
    REQUIRE(r.exit_code == 0);
    auto outputs = sb.inspect(run_id)["outputs"];
    for (const auto& c : contexts()) {
      INFO("context " << c.id);
      CHECK(outputs[c.id] == json{{"hex", hex_of(c.prefix + value + c.suffix)}});
    }
    CHECK_FALSE(sb.dir().exists("PWNED"));
  }
}

TEST_CASE("templates where no spelling is safe are refused by validate and run",
          "[system][shell]") {
  struct case_t {
    const char* what;
    json run;
    std::vector<std::string> fragments;
  };
  const std::vector<case_t> cases = {
      {"${x:-...}",
       "echo ${x:-{{input.v}}}",
       {"root.sequence[1].run: ",
        "template \"{{input.v}}\" is inside a ${...} parameter "
        "expansion",
        "v={{input.v}}; echo \"${x:-$v}\""}},
      {"$((...))",
       "echo $(( {{input.n}} + 1 ))",
       {"root.sequence[1].run: ", "template \"{{input.n}}\" is inside an arithmetic expansion",
        "n={{input.n}}; case $n in"}},
      {"a quoted here-document in sh -c",
       json::array({"sh", "-c", "cat <<'EOF'\n{{input.v}}\nEOF"}),
       {"root.sequence[1].run[2]: ", "is in the body of a quoted here-document"}},
      {"any template in a bash script",
       json::array({"bash", "-c", "echo \"{{input.v}}\""}),
       {"root.sequence[1].run[2]: ",
        R"(template "{{input.v}}" is in a bash script: bash can run a value as code in )"
        R"(arithmetic (let, declare -i, [[ -eq ]], array subscripts, ...), which no reader of )"
        R"(the script can rule out; pass the value as an argument after the script and use )"
        R"("$1": ["bash", "-c", "echo \"$1\"", "bash", "{{input.v}}"], or use a "run" string )"
        R"((/bin/sh))"}},
      {"a template in a shell's options",
       json::array({"sh", "-{{input.v}}", "echo"}),
       {"root.sequence[1].run[1]: ",
        R"(template "{{input.v}}" is among the options of sh, or could be read as one (a )"
        R"(value starting with "-" or "+"): options must be literal, so that which argument is )"
        R"(the script is known; pass the value as an argument after the script and use "$1": )"
        R"(["sh", "-c", "echo \"$1\"", "sh", "{{input.v}}"] (a script file named by a )"
        R"(template goes after "--": ["sh", "--", "{{input.v}}"]))"}},
  };
  for (const auto& c : cases) {
    json doc = {
        {"name", "refused"},
        {"root",
         {{"sequence",
           {{{"task", "a"}, {"value", json::object()}}, {{"task", "b"}, {"run", c.run}}}}}}};
    for (const char* command : {"validate", "run"}) {
      DYNAMIC_SECTION(c.what << " / " << command) {
        check_refused(
            [&](const sandbox& sb) {
              std::vector<std::string> args{command, sb.write("bad.json", doc)};
              if (std::string{command} == "run")
                args.insert(args.end(), {"--input", R"({"v": "x", "n": 1})"});
              return args;
            },
            {"INVALID_WORKFLOW", c.fragments});
      }
    }
  }
}

TEST_CASE("where bash would run a value as code, validate and run refuse and nothing runs",
          "[system][shell]") {
  // Each ran a[$(touch PWNED)] (or the script itself) before it was refused.
  const std::vector<std::string> scripts = {
      "function f { let t={{input.n}}+1; }; f",
      "function f { [[ {{input.n}} -eq 1 ]]; }; f",
      "function f { declare -i n={{input.n}}; }; f",
      "LC_ALL=C let t={{input.n}}+1",
      "X=1 declare -i n={{input.n}}",
      "time -p let n={{input.n}}",
      "coproc let n={{input.n}}; wait",
      "coproc C { let n={{input.n}}; }; wait",
      "\"let\" n={{input.n}}",
      "'let' n={{input.n}}",
      "le\"\"t n={{input.n}}",
      "\\let n={{input.n}}",
      "'declare' -i n={{input.n}}",
      "declare \"-i\" n={{input.n}}",
      "declare '-i' n={{input.n}}",
      "declare \\-i n={{input.n}}",
      "test \"-v\" {{input.n}}",
      "test -\\v {{input.n}}",
      "[ \"-v\" {{input.n}} ]",
      "let\\\n n={{input.n}}",
      "l\\\net n={{input.n}}",
      "declare -i\\\n n={{input.n}}",
      "[[ 1 -eq\\\n {{input.n}} ]]",
  };
  sandbox outer; // where a value that ran would leave its mark
  const std::string pwned = outer.file("PWNED");
  json input = {{"n", "a[$(touch " + pwned + ")]"}, {"o", "ec"}, {"x", "; touch " + pwned}};
  struct case_t {
    const char* what;
    json tasks;
    std::vector<std::string> fragments;
  };
  std::vector<case_t> cases;
  {
    // in bash scripts: every template is refused
    case_t c{"bash argv scripts", json::array(), {}};
    for (std::size_t i = 0; i < scripts.size(); ++i) {
      c.tasks.push_back(
          {{"task", "t" + std::to_string(i)}, {"run", json::array({"bash", "-c", scripts[i]})}});
      c.fragments.push_back("root.parallel[" + std::to_string(i) +
                            "].run[2]: template \"{{input.n}}\" is in a bash script: ");
    }
    // a template in the options, which made the next argument the script
    c.tasks.push_back(
        {{"task", "options"}, {"run", json::array({"bash", "-{{input.o}}", "echo {{input.x}}"})}});
    c.fragments.push_back("root.parallel[" + std::to_string(scripts.size()) +
                          "].run[1]: template \"{{input.o}}\" is among the options of bash");
    cases.push_back(std::move(c));
  }
  {
    // the same as run strings, read as bash would (/bin/sh is bash elsewhere)
    case_t c{"run strings", json::array(), {}};
    for (std::size_t i = 0; i < scripts.size(); ++i) {
      c.tasks.push_back({{"task", "t" + std::to_string(i)}, {"run", scripts[i]}});
      c.fragments.push_back("root.parallel[" + std::to_string(i) +
                            "].run: template \"{{input.n}}\" ");
    }
    cases.push_back(std::move(c));
  }
  for (const auto& c : cases) {
    json doc = {{"name", "refused"}, {"root", {{"parallel", c.tasks}}}};
    for (const char* command : {"validate", "run"}) {
      DYNAMIC_SECTION(c.what << " / " << command) {
        check_refused(
            [&](const sandbox& sb) {
              std::vector<std::string> args{command, sb.write("bad.json", doc)};
              if (std::string{command} == "run") args.insert(args.end(), {"--input", input.dump()});
              return args;
            },
            {"INVALID_WORKFLOW", c.fragments});
        CHECK_FALSE(file_exists(pwned));
      }
    }
    // each alone, so that no other refusal hides one that would run
    DYNAMIC_SECTION(c.what << " / run, one task each") {
      for (const auto& task : c.tasks) {
        INFO(task.dump());
        sandbox sb;
        json one = {{"name", "refused"}, {"root", task}};
        auto r = sb.cli({"run", sb.write("bad.json", one), "--input", input.dump()});
        INFO(r);
        CHECK(r.exit_code == 4);
        CHECK(contains(r.err, "error: INVALID_WORKFLOW: "));
        CHECK_FALSE(any_db_file(sb));
        CHECK_FALSE(file_exists(pwned));
        std::filesystem::remove(pwned);
      }
    }
  }
}

TEST_CASE("a value with a NUL byte fails its task for good and runs nothing", "[system][shell]") {
  sandbox sb;
  std::string victim = sb.file("victim");
  std::filesystem::create_directories(victim);
  sb.write("victim/keep.txt", std::string("keep"));
  // Cut at the NUL, "{{input.dir}}/cache" would be the victim directory.
  // continue_on_fail: each failing task is seen, whatever fails first.
  auto failing = [](const std::string& id, json run) {
    return json{{"task", id}, {"retries", 2}, {"continue_on_fail", true}, {"run", std::move(run)}};
  };
  json env_task = failing("env", "touch ran-env; rm -rf \"$D\"; echo '{}'");
  env_task["env"] = {{"D", "{{input.dir}}/cache"}};
  json wf = {{"name", "nul"},
             {"root",
              {{"sequence",
                {{{"task", "fine"}, {"run", "touch ran-fine; echo '{}'"}},
                 {{"parallel",
                   {failing("shell", "touch ran-shell; rm -rf {{input.dir}}/cache; echo '{}'"),
                    failing("argv", json::array({"rm", "-rf", "{{input.dir}}/cache"})),
                    failing("argv_sh", json::array({"sh", "-c", "touch ran-argv-sh; rm -rf \"$1\"",
                                                    "sh", "{{input.dir}}/cache"})),
                    env_task}}}}}}}};
  json input = {{"dir", victim + std::string("\0", 1)}};
  auto r =
      sb.cli_json({"run", sb.write("wf.json", wf), "--run-id", "nul", "--input", input.dump()});
  INFO(r);
  CHECK(r.exit_code == 0);
  auto j = sb.inspect("nul");
  for (const char* id : {"shell", "argv", "argv_sh", "env"}) {
    INFO("task " << id);
    auto attempts = attempts_of(j, id);
    REQUIRE(attempts.size() == 1); // not retried
    CHECK(attempts[0]["error"]["code"] == "INVALID_INPUT");
    CHECK(attempts[0]["error"]["message"] ==
          "template \"{{input.dir}}\": the value contains a NUL byte, which no argument or "
          "environment variable can hold");
    CHECK(node_of(j, id)["state"] == "failed");
  }
  CHECK(node_of(j, "fine")["state"] == "finished");
  CHECK(sb.dir().exists("ran-fine"));
  CHECK_FALSE(sb.dir().exists("ran-shell"));
  CHECK_FALSE(sb.dir().exists("ran-argv-sh"));
  CHECK_FALSE(sb.dir().exists("ran-env"));
  CHECK(read_file(victim + "/keep.txt") == "keep");
}
