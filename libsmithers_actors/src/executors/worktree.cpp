#include "executors/worktree.hpp"

#include "executors/command.hpp"
#include "util/subprocess.hpp"

#include <chrono>
#include <climits>
#include <cstdlib>
#include <dirent.h>
#include <mutex>
#include <sys/stat.h>

namespace smithers::executors {

namespace {

struct git_result {
  bool ok = false;
  std::string out; // stdout, last line end removed
  std::string err; // stderr, or why git could not run
};

// One git command, argv only (no shell), with the repository's variables
// of an enclosing git (a hook) removed so that `-C` decides.
git_result git(const std::vector<std::string>& args,
               const std::shared_ptr<std::atomic<bool>>& cancel) {
  util::subprocess_request req;
  req.argv = {"git"};
  req.argv.insert(req.argv.end(), args.begin(), args.end());
  req.remove_env = {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR"};
  req.extra_env = {{"GIT_TERMINAL_PROMPT", "0"}};
  req.cancel = cancel;
  req.timeout = std::chrono::milliseconds{60000};
  auto res = util::run_subprocess(req);
  git_result g;
  g.out = std::move(res.out);
  while (!g.out.empty() && (g.out.back() == '\n' || g.out.back() == '\r'))
    g.out.pop_back();
  g.err = !res.spawn_error.empty() ? res.spawn_error
          : res.cancelled          ? std::string{"cancelled"}
          : res.timed_out          ? std::string{"git did not finish within 60 s"}
                                   : std::move(res.err);
  g.ok = res.exited && res.exit_code == 0;
  return g;
}

std::string real_path(const std::string& p) {
  char buf[PATH_MAX];
  return ::realpath(p.c_str(), buf) ? std::string{buf} : p;
}

bool is_empty_dir(const std::string& p) {
  DIR* d = ::opendir(p.c_str());
  if (!d) return false;
  bool empty = true;
  while (auto* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") {
      empty = false;
      break;
    }
  }
  ::closedir(d);
  return empty;
}

// Lexically normal absolute path: "a/./b/../c" -> "a/c" (the directory may
// not exist yet, so realpath cannot do it).
std::string normal(const std::string& p) {
  std::vector<std::string> parts;
  std::size_t i = 0;
  while (i <= p.size()) {
    std::size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    std::string part = p.substr(i, j - i);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    i = j + 1;
  }
  std::string out;
  for (const auto& part : parts)
    out += "/" + part;
  return out.empty() ? "/" : out;
}

} // namespace

worktree_result ensure_worktree(const worktree_request& req,
                                const std::shared_ptr<std::atomic<bool>>& cancel) {
  worktree_result r;
  auto fail = [&](std::string message, const std::string& git_text = {}) {
    json details = {{"repo", valid_utf8(req.repo)},
                    {"path", valid_utf8(r.path)},
                    {"branch", valid_utf8(req.branch)}};
    if (!req.base.empty()) details["base"] = valid_utf8(req.base);
    if (!git_text.empty()) details["git"] = last_lines(git_text, 10);
    r.failure = error{errc::worktree_create_failed, valid_utf8(message), std::move(details)};
    return r;
  };
  // A template may have filled the path with nothing (an empty input value).
  if (req.path.empty()) return fail("the worktree's path is empty once its templates are filled");
  static std::mutex creating; // git locks the repository's files: one at a time here
  std::lock_guard<std::mutex> lock(creating);

  auto top = git({"-C", req.repo, "rev-parse", "--path-format=absolute", "--show-toplevel",
                  "--git-common-dir"},
                 cancel);
  if (!top.ok)
    return fail("\"" + req.repo +
                    "\" is not inside a git repository, so no worktree can be made "
                    "from it (run the task in a repository: its cwd)",
                top.err);
  std::string common = top.out.substr(top.out.find('\n') + 1);
  std::string repo_top = top.out.substr(0, top.out.find('\n'));
  r.path = normal(req.path[0] == '/' ? req.path : repo_top + "/" + req.path);

  struct stat st {};
  if (::stat(r.path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return fail("\"" + r.path + "\" exists and is not a directory");
    if (!is_empty_dir(r.path)) {
      auto here = git({"-C", r.path, "rev-parse", "--path-format=absolute", "--show-toplevel",
                       "--git-common-dir"},
                      cancel);
      std::string here_top = here.out.substr(0, here.out.find('\n'));
      std::string here_common = here.out.substr(here.out.find('\n') + 1);
      if (!here.ok || real_path(here_top) != real_path(r.path) ||
          real_path(here_common) != real_path(common))
        return fail("\"" + r.path + "\" exists and is not a worktree of the repository at \"" +
                    repo_top + "\"");
      if (real_path(r.path) == real_path(repo_top))
        return fail("\"" + r.path + "\" is the repository's main working tree, not a worktree");
      r.created = false; // made for an earlier attempt, or run: reused as it is
      return r;
    }
  }

  auto fmt = git({"check-ref-format", "--branch", req.branch}, cancel);
  if (!fmt.ok || req.branch.empty() || req.branch[0] == '-')
    return fail("\"" + req.branch + "\" is not a valid branch name", fmt.err);
  auto exists =
      git({"-C", req.repo, "rev-parse", "--verify", "--quiet", "refs/heads/" + req.branch}, cancel);
  git_result add;
  if (exists.ok) {
    add = git({"-C", req.repo, "worktree", "add", "--", r.path, req.branch}, cancel);
  } else {
    std::vector<std::string> args = {"-C", req.repo,   "worktree", "add",
                                     "-b", req.branch, "--",       r.path};
    if (!req.base.empty()) args.push_back(req.base);
    add = git(args, cancel);
  }
  if (!add.ok)
    return fail("git could not create a worktree at \"" + r.path + "\" on branch \"" + req.branch +
                    "\"",
                add.err);
  r.created = true;
  return r;
}

std::optional<error> enter_worktree(const task_request& req,
                                    const std::shared_ptr<std::atomic<bool>>& cancel,
                                    std::string& cwd, json& meta) {
  if (req.worktree_path.empty()) return std::nullopt;
  auto w = ensure_worktree({req.cwd.empty() ? std::string{"."} : req.cwd, req.worktree_path,
                            req.worktree_branch, req.worktree_base},
                           cancel);
  if (w.failure) return w.failure;
  cwd = w.path;
  if (!meta.is_object()) meta = json::object();
  meta["worktree"] = {{"path", valid_utf8(w.path)},
                      {"branch", valid_utf8(req.worktree_branch)},
                      {"created", w.created}};
  return std::nullopt;
}

} // namespace smithers::executors
