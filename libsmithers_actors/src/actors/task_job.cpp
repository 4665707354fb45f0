#include "actors/task_job.hpp"

#include "executors/command.hpp"
#include "schema/schema.hpp"
#include "util/json_bounds.hpp"

#include <smithers/limits.hpp>

#include <cmath>

namespace smithers::actors {

namespace {

task_outcome failed(error e) {
  task_outcome res;
  res.err = std::move(e);
  return res;
}

task_outcome checked(const task_job& job, json out) {
  task_outcome res;
  // First, and without recursion: too deep a value would overflow the
  // stack in what follows (schema validation, copies, the event's text).
  if (auto err = util::check_output_bounds(out, job.max_output_bytes)) {
    err->message = "task \"" + job.node_id + "\": " + err->message;
    res.err = std::move(err);
    return res;
  }
  if (!out.is_object()) {
    res.err = error{errc::invalid_output,
                    "task \"" + job.node_id + "\" returned JSON that is not an object",
                    {{"output", out}}};
    return res;
  }
  if (job.output_schema) {
    auto ps = spec::validate(*job.output_schema, out);
    if (!ps.empty()) {
      json list = json::array();
      for (const auto& p : ps)
        list.push_back({{"path", p.path}, {"message", p.message}});
      res.err =
          error{errc::invalid_output,
                "output of \"" + job.node_id + "\" does not match its schema: " + spec::join(ps),
                {{"problems", list}}};
      return res;
    }
  }
  res.output = std::move(out);
  return res;
}

} // namespace

task_outcome execute(const task_job& job, const std::shared_ptr<std::atomic<bool>>& cancel,
                     const std::function<void(json, bool)>& on_heartbeat,
                     const std::function<void(std::int64_t)>& on_process) {
  const task_spec& spec = *job.spec;
  try {
    switch (spec.kind) {
    case task_kind::value:
      return checked(job, spec.value);
    case task_kind::compute: {
      task_context ctx{task_context::init{job.run_id, job.node_id, job.iteration, job.attempt,
                                          job.input ? *job.input : json::object(), job.needs,
                                          job.last_heartbeat, cancel, [&](json data) {
                                            bool has_data = !data.is_null();
                                            on_heartbeat(std::move(data), has_data);
                                          }}};
      return checked(job, job.compute(ctx));
    }
    case task_kind::command: {
      executors::command_spec cs;
      cs.argv = job.argv;
      cs.env = job.env;
      cs.cwd = job.cwd;
      cs.run_id = job.run_id;
      cs.node_id = job.node_id;
      cs.iteration = job.iteration;
      cs.attempt = job.attempt;
      cs.input = job.input ? *job.input : json::object();
      cs.needs = job.needs;
      cs.last_heartbeat = job.last_heartbeat;
      cs.cancel = cancel;
      cs.on_start = on_process;
      cs.max_stdout_bytes = job.max_output_bytes * limits::stdout_bytes_per_output_byte;
      if (spec.timeout_ms) cs.timeout = std::chrono::milliseconds{*spec.timeout_ms};
      auto oc = executors::run_command(cs, [&](const json& data, bool has_data) {
        // A bare "::heartbeat" is liveness only: it keeps the last checkpoint.
        on_heartbeat(data, has_data && !data.is_null());
      });
      if (oc.failure) return failed(std::move(*oc.failure));
      if (!oc.output) return failed(error{errc::task_failed, "command produced no output"});
      return checked(job, std::move(*oc.output));
    }
    }
  } catch (const smithers_error& e) {
    return failed(e.err());
  } catch (const std::exception& e) {
    return failed(error{errc::task_failed, "task \"" + job.node_id + "\" threw: " + e.what()});
  } catch (...) {
    return failed(error{errc::task_failed, "task \"" + job.node_id + "\" threw a non-exception"});
  }
  return failed(error{errc::task_failed, "unknown task kind"});
}

// Failures that another attempt would only repeat: bad data (an output, a
// template value with a NUL byte or too large to pass), a bad workflow.
bool is_retryable(const error& e) {
  return traits_of(e.code).retryable;
}

std::int64_t backoff_ms(const retry_policy& p, std::int64_t next_attempt, double unit) {
  double d = static_cast<double>(p.initial_ms) *
             std::pow(p.backoff, static_cast<double>(std::max<std::int64_t>(0, next_attempt - 2)));
  d = std::min(d, static_cast<double>(p.max_ms));
  if (p.jitter > 0) d *= 1.0 + p.jitter * (2.0 * unit - 1.0);
  return std::max<std::int64_t>(0, static_cast<std::int64_t>(d));
}

} // namespace smithers::actors
