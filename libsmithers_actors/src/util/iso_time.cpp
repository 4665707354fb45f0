#include "util/iso_time.hpp"

#include <cstdio>

namespace smithers::util {

namespace {

constexpr std::int64_t ms_per_day = 86400000;

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
// days_from_civil, http://howardhinnant.github.io/date_algorithms.html).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

// The inverse: year, month and day of a day count (civil_from_days).
void civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2);
}

unsigned days_in_month(unsigned y, unsigned m) {
  static const unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : days[m - 1];
}

// Reads the text left to right; every read fails (returns false) rather
// than going past the end.
struct cursor {
  std::string_view s;
  std::size_t i = 0;

  bool at_end() const { return i == s.size(); }
  bool peek(char c) const { return i < s.size() && s[i] == c; }
  bool is_digit() const { return i < s.size() && s[i] >= '0' && s[i] <= '9'; }
  bool take(char c) {
    if (!peek(c)) return false;
    ++i;
    return true;
  }
  // Exactly `n` digits.
  bool number(std::size_t n, unsigned& out) {
    out = 0;
    for (std::size_t k = 0; k < n; ++k, ++i) {
      if (!is_digit()) return false;
      out = out * 10 + static_cast<unsigned>(s[i] - '0');
    }
    return true;
  }
};

} // namespace

std::optional<std::int64_t> parse_iso_time(std::string_view text) {
  cursor c{text};
  unsigned year, month, day, hour, minute, second = 0, ms = 0;
  if (!c.number(4, year) || !c.take('-') || !c.number(2, month) || !c.take('-') ||
      !c.number(2, day))
    return std::nullopt;
  if (!c.take('T') && !c.take('t') && !c.take(' ')) return std::nullopt;
  if (!c.number(2, hour) || !c.take(':') || !c.number(2, minute)) return std::nullopt;
  if (c.take(':')) {
    if (!c.number(2, second)) return std::nullopt;
    if (c.take('.')) {
      std::size_t digits = 0;
      for (; c.is_digit(); ++c.i, ++digits)
        if (digits < 3) ms = ms * 10 + static_cast<unsigned>(c.s[c.i] - '0');
      if (digits == 0 || digits > 9) return std::nullopt;
      static const unsigned scale[] = {1, 100, 10, 1};
      ms *= scale[digits < 3 ? digits : 3];
    }
  }
  int offset_minutes = 0;
  if (!c.take('Z') && !c.take('z')) {
    const int sign = c.take('+') ? 1 : c.take('-') ? -1 : 0;
    unsigned off_h, off_m;
    if (sign == 0 || !c.number(2, off_h) || !c.take(':') || !c.number(2, off_m))
      return std::nullopt;
    if (off_h > 23 || off_m > 59) return std::nullopt;
    offset_minutes = sign * static_cast<int>(off_h * 60 + off_m);
  }
  if (!c.at_end()) return std::nullopt;
  if (year < 1970 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
      hour > 23 || minute > 59 || second > 59)
    return std::nullopt;
  const std::int64_t seconds = static_cast<std::int64_t>(hour) * 3600 + minute * 60 + second -
                               static_cast<std::int64_t>(offset_minutes) * 60;
  return days_from_civil(year, month, day) * ms_per_day + seconds * 1000 + ms;
}

std::string format_iso_time(std::int64_t epoch_ms) {
  std::int64_t days = epoch_ms / ms_per_day, rest = epoch_ms % ms_per_day;
  if (rest < 0) {
    rest += ms_per_day;
    --days;
  }
  std::int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  const auto in_day = static_cast<unsigned>(rest);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ", static_cast<long long>(y),
                m, d, in_day / 3600000, in_day / 60000 % 60, in_day / 1000 % 60, in_day % 1000);
  return buf;
}

} // namespace smithers::util
