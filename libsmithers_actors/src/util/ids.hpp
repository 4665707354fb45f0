#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <smithers/errors.hpp>

namespace smithers::util {

/// INVALID_RUN_ID unless 1..limits::max_run_id_length chars of [A-Za-z0-9._:-].
std::optional<error> check_run_id(std::string_view id);
/// A run id a user picks for a new run (run, fork): as check_run_id, and
/// without '~', which numbers the runs of a continue-as-new chain — so a
/// successor's id ("x~2") is never taken.
std::optional<error> check_new_run_id(std::string_view id);

/// Node ids: 1..max_node_id_length chars of [A-Za-z0-9_-] (no dots: templates
/// and predicates use dotted paths "<node_id>.<field>").
inline constexpr std::size_t max_node_id_length = 128;
bool valid_node_id(std::string_view id);
/// Agent ids (docs/agents.md): like node ids, dots allowed ("gpt-4.1").
bool valid_agent_id(std::string_view id);

/// A new run id: "run-<unix ms>-<8 random hex>".
std::string new_run_id();

/// 16 random hex characters.
std::string random_hex(std::size_t bytes = 8);

/// Why `name` is not a valid signal name (1..128 bytes of letters, digits
/// and . _ : - /), or nullopt.
std::optional<std::string> check_signal_name(std::string_view name);

} // namespace smithers::util
