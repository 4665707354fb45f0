#include "executors/executor.hpp"

#include "executors/agent.hpp"
#include "executors/command.hpp"
#include "executors/worktree.hpp"
#include "schema/schema.hpp"
#include "util/json_bounds.hpp"

#include <smithers/limits.hpp>

namespace smithers::executors {

namespace {

task_outcome failed(error e) {
  task_outcome res;
  res.err = std::move(e);
  return res;
}

task_outcome succeeded(json out) {
  task_outcome res;
  res.output = std::move(out);
  return res;
}

task_outcome checked(const task_request& req, task_outcome res) {
  if (!res.output) {
    if (!res.err) res.err = error{errc::task_failed, "the task produced no output"};
    return res;
  }
  if (auto err = check_output(req, *res.output)) {
    res.output.reset();
    res.err = std::move(err);
  }
  return res;
}

class value_executor final : public executor {
public:
  task_outcome run(const task_job& job, const attempt_io&) const override {
    return succeeded(job.request.value);
  }
};

class compute_executor final : public executor {
public:
  task_outcome run(const task_job& job, const attempt_io& io) const override {
    const task_request& req = job.request;
    if (!job.compute)
      return failed(error{errc::invalid_workflow, "compute task \"" + req.key.id +
                                                      "\" has no function in this process"});
    task_context ctx{task_context::init{req.run_id, req.key.id, req.key.iteration, req.attempt,
                                        req.input ? *req.input : json::object(), req.needs,
                                        req.last_heartbeat, io.cancel, [&](json data) {
                                          bool has_data = !data.is_null();
                                          io.heartbeat(std::move(data), has_data);
                                        }}};
    return succeeded(job.compute(ctx));
  }
};

class command_executor final : public executor {
public:
  task_outcome run(const task_job& job, const attempt_io& io) const override {
    const task_request& req = job.request;
    command_spec cs;
    json meta = json::object();
    cs.cwd = req.cwd;
    if (auto err = enter_worktree(req, io.cancel, cs.cwd, meta)) {
      task_outcome r = failed(std::move(*err));
      r.meta = std::move(meta);
      return r;
    }
    cs.argv = req.argv;
    cs.env = req.env;
    cs.on_output = io.output;
    cs.run_id = req.run_id;
    cs.node_id = req.key.id;
    cs.iteration = req.key.iteration;
    cs.attempt = req.attempt;
    cs.input = req.input ? *req.input : json::object();
    cs.needs = req.needs;
    cs.last_heartbeat = req.last_heartbeat;
    cs.cancel = io.cancel;
    cs.on_start = io.process_started;
    cs.max_stdout_bytes = req.max_output_bytes * limits::stdout_bytes_per_output_byte;
    if (req.timeout_ms) cs.timeout = std::chrono::milliseconds{*req.timeout_ms};
    auto oc = run_command(cs, [&](const json& data, bool has_data) {
      // A bare "::heartbeat" is liveness only: it keeps the last checkpoint.
      io.heartbeat(data, has_data && !data.is_null());
    });
    task_outcome r = oc.failure   ? failed(std::move(*oc.failure))
                     : !oc.output ? failed(error{errc::task_failed, "command produced no output"})
                                  : succeeded(std::move(*oc.output));
    if (!meta.empty()) r.meta = std::move(meta);
    return r;
  }
};

} // namespace

std::optional<error> check_output(const task_request& req, const json& out) {
  const std::string& id = req.key.id;
  // First, and without recursion: too deep a value would overflow the
  // stack in what follows (schema validation, copies, the event's text).
  if (auto err = util::check_output_bounds(out, req.max_output_bytes)) {
    err->message = "task \"" + id + "\": " + err->message;
    return err;
  }
  if (!out.is_object())
    return error{errc::invalid_output,
                 "task \"" + id + "\" returned JSON that is not an object",
                 {{"output", out}}};
  if (req.output_schema) {
    auto ps = spec::validate(*req.output_schema, out);
    if (!ps.empty()) {
      json list = json::array();
      for (const auto& p : ps)
        list.push_back({{"path", p.path}, {"message", p.message}});
      return error{errc::invalid_output,
                   "output of \"" + id + "\" does not match its schema: " + spec::join(ps),
                   {{"problems", list}}};
    }
  }
  return std::nullopt;
}

const executor& executor_for(task_kind kind) {
  static const value_executor value;
  static const compute_executor compute;
  static const command_executor command;
  switch (kind) {
  case task_kind::compute:
    return compute;
  case task_kind::command:
    return command;
  case task_kind::agent:
    return agent_executor();
  case task_kind::value:
  case task_kind::approval: // waits never reach an executor: the run core resolves them
  case task_kind::timer:
  case task_kind::signal:
    break;
  }
  return value;
}

task_outcome execute(const task_job& job, const attempt_io& io) {
  const std::string& id = job.request.key.id;
  try {
    return checked(job.request, executor_for(job.request.kind).run(job, io));
  } catch (const smithers_error& e) {
    return failed(e.err());
  } catch (const std::exception& e) {
    return failed(error{errc::task_failed, "task \"" + id + "\" threw: " + e.what()});
  } catch (...) {
    return failed(error{errc::task_failed, "task \"" + id + "\" threw a non-exception"});
  }
}

// The value executor's work without a job: the value moves into the
// outcome instead of being copied out of a job (a run of 10,000 values
// copies each once, from its spec into the request).
task_outcome resolve_value(task_request req) {
  task_outcome res;
  res.output = std::move(req.value);
  try {
    return checked(req, std::move(res));
  } catch (const std::exception& e) {
    return failed(error{errc::task_failed, "task \"" + req.key.id + "\" threw: " + e.what()});
  }
}

} // namespace smithers::executors
