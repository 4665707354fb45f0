#include <catch2/catch.hpp>

#include "util/iso_time.hpp"

#include <cstdint>
#include <string>
#include <string_view>

using smithers::util::format_iso_time;
using smithers::util::parse_iso_time;

TEST_CASE("parse_iso_time reads RFC 3339 times with a zone", "[iso_time]") {
  struct row {
    std::string in;
    std::int64_t ms;
  };
  const row rows[] = {
      {"1970-01-01T00:00:00Z", 0},
      {"1970-01-01T00:00:00.001Z", 1},
      {"2000-02-29T12:00:00Z", 951825600000},
      {"1999-12-31T23:59:59Z", 946684799000},
      {"2024-02-29T00:00:00Z", 1709164800000},
      {"2100-03-01T00:00:00Z", 4107542400000},
      {"2026-12-02T13:45:00Z", 1796219100000},
      {"2026-12-02T13:45Z", 1796219100000},    // seconds optional
      {"2026-12-02t13:45:00z", 1796219100000}, // lowercase
      {"2026-12-02 13:45:00Z", 1796219100000}, // space for 'T'
      {"2026-12-02T13:45:00+00:00", 1796219100000},
      {"2026-12-02T13:45:00-00:00", 1796219100000},
      {"2026-12-02T14:45:00+01:00", 1796219100000}, // +01:00 is an hour ahead of UTC
      {"2026-12-02T13:45:00.250+01:00", 1796215500250},
      {"2026-12-02T13:45:00-05:30", 1796238900000},
      {"2026-12-02T08:15:00-05:30", 1796219100000},
      {"2026-12-31T23:30:00-23:59", 1798846140000}, // crosses into the next year
      {"1970-01-01T00:00:00+23:59", -86340000},     // the written year is what counts
      {"2026-12-02T13:45:00.5Z", 1796219100500},
      {"2026-12-02T13:45:00.05Z", 1796219100050},
      {"2026-12-02T13:45:00.123456Z", 1796219100123},    // truncated, not rounded
      {"2026-12-02T13:45:00.999999999Z", 1796219100999}, // 9 digits is the most
      {"2026-12-02T13:45:00.000Z", 1796219100000},
      {"9999-12-31T23:59:59.999Z", 253402300799999},
  };
  for (const auto& r : rows) {
    INFO(r.in);
    const auto ms = parse_iso_time(r.in);
    REQUIRE(ms.has_value());
    CHECK(*ms == r.ms);
  }
}

TEST_CASE("parse_iso_time refuses anything else", "[iso_time]") {
  const std::string rows[] = {
      "",
      "garbage",
      "now",
      "1796219100000",
      "2026-12-02", // a date alone
      "2026-12-02T",
      "2026-12-02T13:45:00", // no zone
      "2026-12-02T13:45",
      "2026-12-02T13Z",
      "2026-12-02T13:45:00+1", // offsets are +HH:MM
      "2026-12-02T13:45:00+01",
      "2026-12-02T13:45:00+0100",
      "2026-12-02T13:45:00+01:0",
      "2026-12-02T13:45:00+24:00", // offsets beyond +-23:59
      "2026-12-02T13:45:00-23:60",
      "2026-12-02T13:45:00ZZ", // trailing text
      "2026-12-02T13:45:00Z ",
      " 2026-12-02T13:45:00Z",
      "2026-12-02T13:45:00Z[Europe/Paris]",
      "2026-13-02T13:45:00Z", // month 13
      "2026-00-02T13:45:00Z",
      "2026-12-00T13:45:00Z",
      "2026-12-32T13:45:00Z",
      "2026-11-31T13:45:00Z", // 30-day month
      "2026-04-31T00:00:00Z",
      "2026-02-29T00:00:00Z", // not a leap year
      "2100-02-29T00:00:00Z", // nor is 2100
      "2026-12-02T24:00:00Z", // hour 24
      "2026-12-02T13:60:00Z", // minute 60
      "2026-12-02T13:45:60Z", // leap second: refused
      "2026-12-02T13:45:61Z",
      "2026-12-02T13:45:99Z",
      "1969-12-31T23:59:59Z", // years outside 1970..9999
      "0000-01-01T00:00:00Z",
      "10000-01-01T00:00:00Z",
      "+2026-12-02T13:45:00Z",
      "2026-12-02T13:45:00.1234567890Z", // fraction with more than 9 digits
      "2026-12-02T13:45:00.Z",           // '.' without digits
      "2026-12-02T13:45:00,5Z",          // ISO's comma, not RFC 3339
      "2026-12-02T13:45.5Z",             // fraction without seconds
      "2026-12-02_13:45:00Z",
      "2026-12-2T13:45:00Z", // fields have fixed widths
      "2026-1-02T13:45:00Z",
      "2026-12-02T3:45:00Z",
      "2026/12/02T13:45:00Z",
      "20261202T134500Z", // ISO basic format
      "2026-12-02T13:45:0aZ",
      "2026-12-02T-1:45:00Z",
      std::string("2026-12-02T13:45:00Z\0", 21), // embedded NUL
      std::string("2026-12-02T13:45\0:00Z", 21),
      std::string("2026-12-02\0T13:45:00Z", 21),
  };
  for (const auto& r : rows) {
    INFO('"' << r << "\" (" << r.size() << " bytes)");
    CHECK_FALSE(parse_iso_time(r).has_value());
  }
}

TEST_CASE("parse_iso_time reads only the string_view's bytes", "[iso_time]") {
  const char text[] = "2026-12-02T13:45:00Z trailing";
  CHECK(parse_iso_time(std::string_view(text, 20)) == std::int64_t{1796219100000});
  CHECK_FALSE(parse_iso_time(std::string_view(text, 19)).has_value());
  CHECK_FALSE(parse_iso_time(std::string_view(text, 21)).has_value());
  CHECK_FALSE(parse_iso_time(std::string_view()).has_value());
}

TEST_CASE("format_iso_time writes UTC with milliseconds", "[iso_time]") {
  struct row {
    std::int64_t ms;
    std::string out;
  };
  const row rows[] = {
      {0, "1970-01-01T00:00:00.000Z"},
      {1, "1970-01-01T00:00:00.001Z"},
      {951825600000, "2000-02-29T12:00:00.000Z"},
      {1796215500250, "2026-12-02T12:45:00.250Z"},
      {1709164799999, "2024-02-28T23:59:59.999Z"},
      {253402300799999, "9999-12-31T23:59:59.999Z"},
  };
  for (const auto& r : rows) {
    INFO(r.ms);
    CHECK(format_iso_time(r.ms) == r.out);
  }
}

TEST_CASE("format_iso_time and parse_iso_time round-trip", "[iso_time]") {
  const std::int64_t values[] = {0,
                                 1,
                                 999,
                                 86399999,
                                 86400000,
                                 951782400000,
                                 951868799999,
                                 1709164800000,
                                 1796215500250,
                                 4107542400000,
                                 253402300799999};
  for (const auto ms : values) {
    INFO(ms);
    CHECK(parse_iso_time(format_iso_time(ms)) == ms);
  }
  // Every day from 1970 to past 2100 (leap years, month ends, 2100 not leap).
  for (std::int64_t day = 0; day < 50000; ++day) {
    const std::int64_t ms = day * 86400000 + (day * 7919) % 86400000;
    const auto back = parse_iso_time(format_iso_time(ms));
    if (back != ms) {
      INFO(format_iso_time(ms));
      CHECK(back == ms);
    }
  }
  const std::string texts[] = {"2026-12-02T13:45:00.250+01:00", "2026-12-02 08:15-05:30",
                               "2000-02-29t12:00:00.123456z"};
  const std::string utc[] = {"2026-12-02T12:45:00.250Z", "2026-12-02T13:45:00.000Z",
                             "2000-02-29T12:00:00.123Z"};
  for (std::size_t i = 0; i < 3; ++i) {
    INFO(texts[i]);
    const auto ms = parse_iso_time(texts[i]);
    REQUIRE(ms.has_value());
    CHECK(format_iso_time(*ms) == utc[i]);
  }
}
