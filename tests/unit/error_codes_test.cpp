#include <catch2/catch.hpp>

#include <smithers/errors.hpp>

#include <set>
#include <string>

using namespace smithers;

TEST_CASE("every error code in docs/reference.md has its traits, once", "[errors]") {
  const std::set<std::string> spec = {"INVALID_INPUT",
                                      "INVALID_RUN_ID",
                                      "INVALID_ARGUMENT",
                                      "INVALID_WORKFLOW",
                                      "INVALID_OUTPUT",
                                      "TASK_FAILED",
                                      "TASK_TIMEOUT",
                                      "TASK_HEARTBEAT_TIMEOUT",
                                      "TASK_ABORTED",
                                      "HEARTBEAT_PAYLOAD_TOO_LARGE",
                                      "HEARTBEAT_PAYLOAD_NOT_JSON_SERIALIZABLE",
                                      "TEMPLATE_MISSING_VALUE",
                                      "RUN_NOT_FOUND",
                                      "RUN_NOT_RESUMABLE",
                                      "RUN_OWNER_ALIVE",
                                      "RUN_STILL_RUNNING",
                                      "RUN_RESUME_CLAIM_FAILED",
                                      "RESUME_METADATA_MISMATCH",
                                      "RUN_CANCELLED",
                                      "LOOP_MAX_REACHED",
                                      "CONTINUATION_STATE_TOO_LARGE",
                                      "APPROVAL_DENIED",
                                      "SIGNAL_TIMEOUT",
                                      "WORKER_LOST",
                                      "WORKER_UNAVAILABLE",
                                      "UNAUTHORIZED",
                                      "FORBIDDEN",
                                      "NOT_FOUND",
                                      "METHOD_NOT_ALLOWED",
                                      "SERVER_BUSY",
                                      "AGENT_AUTH_FAILED",
                                      "WORKTREE_CREATE_FAILED",
                                      "DB_ERROR",
                                      "INTERNAL"};
  std::set<std::string> table;
  for (const auto& t : error_codes) {
    INFO(t.code);
    CHECK(table.insert(t.code).second);
    CHECK((t.exit_code == 1 || t.exit_code == 2 || t.exit_code == 4));
  }
  CHECK(table == spec);
}

TEST_CASE("error traits: what is retried, and what the CLI exits with", "[errors]") {
  struct row {
    const char* code;
    bool retryable;
    int exit_code;
  };
  const row rows[] = {
      {"TASK_FAILED", true, 1},
      {"TASK_TIMEOUT", true, 1},
      {"TASK_HEARTBEAT_TIMEOUT", true, 1},
      {"WORKER_LOST", true, 1},
      {"INVALID_OUTPUT", false, 1},
      {"TEMPLATE_MISSING_VALUE", false, 1},
      {"INVALID_INPUT", false, 4},
      {"INVALID_ARGUMENT", false, 4},
      {"INVALID_WORKFLOW", false, 4},
      {"RUN_NOT_FOUND", false, 4},
      {"RUN_OWNER_ALIVE", false, 4},
      {"RUN_CANCELLED", false, 2},
      {"DB_ERROR", false, 1},
      {"INTERNAL", false, 1},
      {"AGENT_AUTH_FAILED", false, 1},
      {"WORKTREE_CREATE_FAILED", false, 1},
      {"MY_OWN_CODE", true, 1}, // a host's own code
  };
  for (const auto& r : rows) {
    INFO(r.code);
    CHECK(traits_of(r.code).retryable == r.retryable);
    CHECK(traits_of(r.code).exit_code == r.exit_code);
  }
}
