// Embedding smithers-actors in a host program.
//
//   embedding [DB_PATH]      DB_PATH: a SQLite file (created if missing) or
//                            ":memory:" (the default)
//
// Defines a workflow in C++: take some numbers, square each one in parallel,
// add the squares. Runs it to its end with engine::run, then a second time
// asynchronously with start() + wait(), then shows the error a bad run id
// gets. Exits 0 only if every step gave what it should.
#include <smithers/engine.hpp>

#include <chrono>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

using smithers::json;
namespace sm = smithers;

namespace {

constexpr int count = 4; // how many numbers get squared

std::mutex out_mtx; // event handlers run on engine threads: serialize output

sm::workflow make_workflow() {
  sm::workflow wf;
  wf.name = "sum-of-squares";
  wf.input_schema = {
      {"type", "object"},
      {"required", {"numbers"}},
      {"properties", {{"numbers", {{"type", "array"}, {"items", {{"type", "integer"}}}}}}}};
  // Named output schemas: a task refers to one with .output("name").
  wf.output_schemas["numbers"] = {{"type", "object"}, {"required", {"numbers"}}};
  wf.output_schemas["square"] = {{"type", "object"},
                                 {"required", {"square"}},
                                 {"properties", {{"square", {{"type", "integer"}}}}}};

  // One inline compute per number; each reads "fetch"'s output via needs.
  std::vector<sm::node> squares;
  std::vector<std::string> square_ids;
  for (int i = 0; i < count; ++i) {
    std::string id = "square_" + std::to_string(i);
    squares.push_back(
        sm::compute_task(id,
                         [i](sm::task_context& ctx) {
                           auto n = ctx.need("fetch").at("numbers").at(i).get<std::int64_t>();
                           return json{{"square", n * n}};
                         })
            .needs({"fetch"})
            .output("square"));
    square_ids.push_back(id);
  }

  wf.root = sm::sequence({
      // A value task: its output is the JSON object given here.
      sm::value_task("config", {{"take", count}}),
      // An inline C++ lambda: reads the run input and the output of "config".
      sm::compute_task("fetch",
                       [](sm::task_context& ctx) {
                         auto take = ctx.need("config").at("take").get<std::size_t>();
                         json numbers = json::array();
                         for (const auto& n : ctx.input().at("numbers")) {
                           if (numbers.size() == take) break;
                           numbers.push_back(n);
                         }
                         ctx.heartbeat({{"fetched", numbers.size()}}); // liveness + checkpoint
                         return json{{"numbers", numbers}};
                       })
          .needs({"config"})
          .retries(2)
          .retry({/*initial_ms*/ 100, /*backoff*/ 2.0, /*max_ms*/ 1000, /*jitter*/ 0.1})
          .output("numbers")
          .label("fetch the numbers"),
      sm::parallel(squares, /*max_concurrency*/ 2),
      // A registered compute, referred to by name (see register_compute below).
      sm::compute_task("sum", "sum")
          .needs(square_ids)
          .output_schema({{"type", "object"},
                          {"required", {"sum"}},
                          {"properties", {{"sum", {{"type", "integer"}, {"minimum", 0}}}}}}),
  });
  return wf;
}

// Adds the "square" fields of every needed output.
json sum_squares(sm::task_context& ctx) {
  std::int64_t total = 0;
  for (const auto& [id, out] : ctx.needs().items())
    total += out.at("square").get<std::int64_t>();
  return {{"sum", total}};
}

std::int64_t sum_of(const sm::run_result& r) {
  auto it = r.outputs.find("sum");
  return it == r.outputs.end() ? -1 : it->second.value("sum", std::int64_t{-1});
}

void print_result(const sm::run_result& r) {
  std::lock_guard<std::mutex> lk(out_mtx);
  std::cout << "run " << r.run_id << ": " << sm::to_string(r.status) << "\n";
  if (r.err) std::cout << "  error: " << r.err->to_json().dump() << "\n";
  for (const auto& [id, out] : r.outputs)
    std::cout << "  " << id << " -> " << out.dump() << "\n";
}

} // namespace

int main(int argc, char** argv) {
  sm::engine_config cfg;
  cfg.db_path = argc > 1 ? argv[1] : ":memory:";
  bool ok = true;
  try {
    sm::engine eng{cfg}; // opens (and migrates) the database

    // Usable as compute_task(id, "sum") here and as {"compute": "sum"} in
    // JSON workflows run by this engine.
    eng.register_compute("sum", sum_squares);

    // Every event of every run, after it is committed to the database.
    auto sub = eng.subscribe([](const sm::event& e) {
      std::lock_guard<std::mutex> lk(out_mtx);
      std::cout << "  event " << e.seq << " " << e.type;
      if (e.fields.contains("node_id")) std::cout << " " << e.fields["node_id"].get<std::string>();
      std::cout << "\n";
    });

    sm::workflow wf = make_workflow();

    // 1. Blocking: run() returns when the run has ended.
    sm::run_options opts;
    opts.input = {{"numbers", {1, 2, 3, 4, 5}}}; // only the first 4 are taken
    sm::run_result r = eng.run(wf, opts);
    print_result(r);
    std::cout << "sum = " << sum_of(r) << "\n";
    ok = ok && r.status == sm::run_status::finished && sum_of(r) == 30; // 1+4+9+16

    eng.unsubscribe(sub); // quieter from here on

    // 2. Asynchronous: start() returns a handle right away.
    sm::run_options async_opts;
    async_opts.input = {{"numbers", {2, 3, 4, 5}}};
    async_opts.on_event = [](const sm::event& e) { // this run's events only
      if (e.type == "RunFinished" || e.type == "RunFailed") {
        std::lock_guard<std::mutex> lk(out_mtx);
        std::cout << "  (on_event) " << e.type << "\n";
      }
    };
    sm::run_handle h = eng.start(wf, async_opts);
    {
      std::lock_guard<std::mutex> lk(out_mtx);
      std::cout << "started " << h.run_id() << " in the background\n";
    }
    while (!h.wait_for(std::chrono::milliseconds{10})) {
      // ...the host goes on with its own work here...
    }
    sm::run_result r2 = h.wait(); // the result, once it has ended
    print_result(r2);
    ok = ok && r2.status == sm::run_status::finished && sum_of(r2) == 54; // 4+9+16+25

    // 3. Bad input is refused before anything is written: start() throws.
    try {
      sm::run_options bad;
      bad.run_id = "not a valid id!"; // run ids are [A-Za-z0-9._:-]
      bad.input = {{"numbers", {1}}};
      eng.start(wf, bad);
      std::cout << "a bad run id was accepted\n";
      ok = false;
    } catch (const sm::smithers_error& e) {
      std::cout << "smithers_error: " << e.what() << "\n"
                << "  code: " << e.code() << "\n"
                << "  as JSON: " << e.err().to_json().dump() << "\n";
      ok = ok && e.code() == sm::errc::invalid_run_id;
    }
  } catch (const sm::smithers_error& e) { // e.g. DB_ERROR: the database cannot be opened
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  // The engine's destructor has waited for every run it started.
  std::cout << (ok ? "ok" : "FAILED") << "\n";
  return ok ? 0 : 1;
}
