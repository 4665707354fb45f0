// Timestamps written by users, such as the `until` field of a workflow
// `timer` node: ISO-8601 / RFC 3339 with an explicit zone. Nothing we link
// parses those portably (strptime has no %z everywhere, timegm is not
// standard, std::chrono::parse is C++20), so this is a small strict parser.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace smithers::util {

/// Milliseconds since the Unix epoch for an ISO-8601 / RFC 3339 time with an
/// explicit zone: "2026-12-02T13:45:00Z", "2026-12-02T13:45:00.250+01:00",
/// "2026-12-02T13:45Z" (seconds optional); 't' / 'z' and a space instead of
/// 'T' are accepted. A fraction (1 to 9 digits, only after seconds) is
/// truncated to milliseconds. nullopt for anything else: no zone, a date
/// alone, out-of-range fields (month 13, Feb 29 in a non-leap year, hour 24,
/// minute 60, second 60 or more: leap seconds are refused), trailing text,
/// years outside 1970..9999, offsets beyond +-23:59. The written year is
/// what is checked, so "1970-01-01T00:00+01:00" gives a negative value.
std::optional<std::int64_t> parse_iso_time(std::string_view text);

/// "2026-12-02T13:45:00.250Z": UTC, always with milliseconds, for epoch
/// ms >= 0 (earlier times are formatted too, in the proleptic calendar).
std::string format_iso_time(std::int64_t epoch_ms);

} // namespace smithers::util
