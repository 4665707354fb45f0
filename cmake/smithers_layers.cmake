# The layering of libsmithers_actors: its modules (one folder
# libsmithers_actors/src/<module>/ each) and which modules each one may use.
# This table is the one place it is written down in code:
#   - libsmithers_actors/CMakeLists.txt makes one target per module, linked to
#     exactly the modules listed here;
#   - cmake/check_layering.cmake (the `layering` test) reads every #include of
#     the library and the CLI and fails on one this table does not allow.
# docs/architecture.md's "Layout" table says the same in words; change both.
#
# A module may use what it lists and, through them, what they list (a module
# listed by a module it uses need not be repeated). Lowest first.

set(SMITHERS_MODULES util schema expr workflow scheduler format store executors admin http core actors)

# bounds checks, JSON parsing, ids, clock, hashing, subprocesses, the blocking
# pool, and the out-of-line parts of the vocabulary headers (status names)
set(SMITHERS_USES_util "")
# our JSON Schema subset; `problem` (a path and what is wrong there)
set(SMITHERS_USES_schema util)
# expressions: templates, shell-script templates, predicates
set(SMITHERS_USES_expr schema util)
# node builders, render; may use expressions (branch `if`, loop `until`)
set(SMITHERS_USES_workflow expr schema util)
# compile (tree -> plan), the incremental scheduler
set(SMITHERS_USES_scheduler workflow util)
# the JSON workflow-file format: parse, validate
set(SMITHERS_USES_format workflow expr schema util)
# SQLite: the only module that includes <sqlite3.h>
set(SMITHERS_USES_store util)
# how an attempt runs: the task request and job, an executor per task kind
# (checking outputs against their schema), the command-task protocol
set(SMITHERS_USES_executors workflow schema util)
# stored runs for tools (include/smithers/admin.hpp)
set(SMITHERS_USES_admin store util)
# smithers serve's rules (who may read and act, status codes, SSE framing):
# pure functions of headers, no HTTP library
set(SMITHERS_USES_http util)
# the run's state machine (run_core), recovery from stored rows, validation of
# a run: no CAF, no SQLite. Of the store it may include only the plain
# command and row structs (below), and does not link the store.
set(SMITHERS_USES_core executors format scheduler workflow expr schema util)
# the engine and the actors: the only module that includes <caf/...>
set(SMITHERS_USES_actors core admin http executors store format scheduler workflow expr schema util)

# Single headers of a module that another module may include without using
# that module (plain data): SMITHERS_OPEN_HEADERS_<module that includes>.
set(SMITHERS_OPEN_HEADERS_core store/writer.hpp store/rows.hpp)

# The public headers (libsmithers_actors/include/smithers/) belong to the
# module that implements them; including one is using that module. The
# vocabulary headers (errors, events, limits, status) are util's.
set(SMITHERS_PUBLIC_HEADER_errors util)
set(SMITHERS_PUBLIC_HEADER_events util)
set(SMITHERS_PUBLIC_HEADER_limits util)
set(SMITHERS_PUBLIC_HEADER_status util)
set(SMITHERS_PUBLIC_HEADER_node_key util)
set(SMITHERS_PUBLIC_HEADER_task workflow)
set(SMITHERS_PUBLIC_HEADER_workflow workflow)
set(SMITHERS_PUBLIC_HEADER_admin admin)
set(SMITHERS_PUBLIC_HEADER_metrics admin)
# Addresses and TLS files (plain data, checked in util); the worker node.
set(SMITHERS_PUBLIC_HEADER_remote util)
set(SMITHERS_PUBLIC_HEADER_worker actors)
# engine.hpp's types (run_options, run_result, engine_config) are the run
# core's vocabulary; the engine class it declares is implemented in actors,
# which uses core.
set(SMITHERS_PUBLIC_HEADER_engine core)

# External headers only one module may include: <caf/...> and <sqlite3.h>.
set(SMITHERS_CAF_MODULE actors)
set(SMITHERS_SQLITE_MODULE store)

# The CLI (apps/smithers/) uses the public headers and, for workflow files and
# templates, these modules; never the store or the actors' internals.
set(SMITHERS_USES_cli http format workflow expr schema util)
