// A strict reader of Prometheus' text exposition format 0.0.4, as much of
// it as smithers writes: `# HELP name text`, `# TYPE name type`, samples
// `name{label="value",...} value`. parse() checks every line and the rules
// a scraper relies on, and returns each sample by its series:
//   - names and label names are valid, label values use only the escapes
//     \\ \" \n, values are floats Prometheus reads (+Inf, -Inf, NaN);
//   - a family has one HELP and one TYPE, both before its samples, and its
//     samples are together;
//   - a histogram's buckets (per label set) have increasing `le`, ending
//     with "+Inf", non-decreasing counts, the +Inf count equal to _count,
//     and a _sum.
// A problem throws std::runtime_error naming the line.
#pragma once

#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_support {

struct exposition {
  std::map<std::string, std::string> types; // family -> counter | gauge | histogram | ...
  std::map<std::string, std::string> help;
  /// Series -> value; a series is written `name{a="x",b="y"}` (labels as
  /// given, values unescaped), or `name` without labels.
  std::map<std::string, double> samples;
  std::vector<std::string> families; // in order of appearance

  double at(const std::string& series) const {
    auto it = samples.find(series);
    if (it == samples.end()) throw std::runtime_error("no series " + series);
    return it->second;
  }
  bool has(const std::string& series) const { return samples.count(series) > 0; }
};

namespace detail {

inline bool name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
inline bool name_char(char c) {
  return name_start(c) || (c >= '0' && c <= '9');
}

inline std::string take_name(const std::string& s, std::size_t& i, bool label) {
  std::size_t b = i;
  if (i >= s.size() || !name_start(s[i]) || (label && s[i] == ':'))
    throw std::runtime_error("expected a name");
  while (i < s.size() && name_char(s[i]) && !(label && s[i] == ':'))
    ++i;
  return s.substr(b, i - b);
}

inline double parse_value(const std::string& v) {
  if (v == "+Inf" || v == "Inf") return std::numeric_limits<double>::infinity();
  if (v == "-Inf") return -std::numeric_limits<double>::infinity();
  if (v == "NaN") return std::numeric_limits<double>::quiet_NaN();
  double d = 0;
  const char* b = v.data();
  if (!v.empty() && v[0] == '+') ++b; // from_chars takes no '+'
  auto r = std::from_chars(b, v.data() + v.size(), d);
  if (v.empty() || r.ec != std::errc() || r.ptr != v.data() + v.size())
    throw std::runtime_error("not a float: \"" + v + "\"");
  return d;
}

struct bucket_run {
  double last_le = -std::numeric_limits<double>::infinity();
  double last_count = 0;
  bool inf_seen = false;
  double inf_count = 0;
};

} // namespace detail

inline exposition parse_exposition(const std::string& text) {
  using namespace detail;
  exposition out;
  if (!text.empty() && text.back() != '\n') throw std::runtime_error("text does not end in \\n");
  std::set<std::string> closed;  // families whose samples are over
  std::string current;           // the family being written
  std::set<std::string> sampled; // families with a sample so far
  // Histograms, per family and label set (le left out).
  std::map<std::string, bucket_run> buckets;
  std::map<std::string, double> counts;
  std::set<std::string> sums;

  std::size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    auto fail = [&](const std::string& why) {
      throw std::runtime_error("line " + std::to_string(line_no) + " \"" + line + "\": " + why);
    };
    try {
      if (line.empty()) fail("empty line");
      if (line[0] == '#') {
        if (line.compare(0, 7, "# HELP ") != 0 && line.compare(0, 7, "# TYPE ") != 0)
          fail("a comment that is neither HELP nor TYPE");
        bool is_help = line[2] == 'H';
        std::size_t i = 7;
        std::string name = take_name(line, i, false);
        if (i >= line.size() || line[i] != ' ') fail("no text after the name");
        std::string rest = line.substr(i + 1);
        if (closed.count(name) || sampled.count(name))
          fail("HELP or TYPE after the family's samples");
        if (name != current) {
          if (!current.empty()) closed.insert(current);
          current = name;
          out.families.push_back(name);
        }
        if (is_help) {
          if (out.help.count(name)) fail("a second HELP");
          for (std::size_t k = 0; k < rest.size(); ++k)
            if (rest[k] == '\\' &&
                (k + 1 >= rest.size() || (rest[k + 1] != '\\' && rest[k + 1] != 'n')))
              fail("a bad escape in HELP");
            else if (rest[k] == '\\')
              ++k;
          out.help[name] = rest;
        } else {
          if (out.types.count(name)) fail("a second TYPE");
          static const std::set<std::string> types{"counter", "gauge", "histogram", "summary",
                                                   "untyped"};
          if (!types.count(rest)) fail("unknown type " + rest);
          out.types[name] = rest;
        }
        continue;
      }
      std::size_t i = 0;
      std::string name = take_name(line, i, false);
      std::vector<std::pair<std::string, std::string>> labels;
      if (i < line.size() && line[i] == '{') {
        ++i;
        while (true) {
          if (i < line.size() && line[i] == '}') {
            ++i;
            break;
          }
          if (!labels.empty()) {
            if (i >= line.size() || line[i] != ',') fail("expected , between labels");
            ++i;
          }
          std::string ln = take_name(line, i, true);
          if (line.compare(i, 2, "=\"") != 0) fail("expected =\" after a label name");
          i += 2;
          std::string v;
          while (true) {
            if (i >= line.size()) fail("unterminated label value");
            char c = line[i++];
            if (c == '"') break;
            if (c == '\\') {
              if (i >= line.size()) fail("a lone backslash");
              char e = line[i++];
              if (e == '\\')
                v += '\\';
              else if (e == '"')
                v += '"';
              else if (e == 'n')
                v += '\n';
              else
                fail("a bad escape in a label value");
            } else {
              v += c;
            }
          }
          for (const auto& l : labels)
            if (l.first == ln) fail("label " + ln + " twice");
          labels.emplace_back(ln, v);
          if (i < line.size() && line[i] == '}') {
            ++i;
            break;
          }
        }
      }
      if (i >= line.size() || line[i] != ' ') fail("expected a space before the value");
      std::string value = line.substr(i + 1);
      if (value.find(' ') != std::string::npos) fail("timestamps are not expected");
      double v = parse_value(value);

      // Its family: a histogram's samples carry a suffix.
      std::string family = name;
      std::string suffix;
      for (const char* s : {"_bucket", "_sum", "_count"}) {
        std::string sx = s;
        if (name.size() > sx.size() && name.compare(name.size() - sx.size(), sx.size(), sx) == 0) {
          std::string base = name.substr(0, name.size() - sx.size());
          if (out.types.count(base) && out.types[base] == "histogram") {
            family = base;
            suffix = sx;
          }
        }
      }
      if (!out.help.count(family)) fail("a sample before its family's HELP");
      if (!out.types.count(family)) fail("a sample before its family's TYPE");
      if (family != current || closed.count(family)) fail("the family's samples are not together");
      if (out.types[family] == "histogram" && suffix.empty())
        fail("a histogram sample without suffix");

      std::string series = name;
      std::string group = family; // label set without le
      std::string le;
      bool has_le = false;
      if (!labels.empty()) {
        series += '{';
        bool first = true;
        for (const auto& [ln, lv] : labels) {
          if (!first) series += ',';
          first = false;
          series += ln + "=\"" + lv + "\"";
          if (ln == "le") {
            le = lv;
            has_le = true;
          } else {
            group += "|" + ln + "=" + lv;
          }
        }
        series += '}';
      }
      if (out.samples.count(series)) fail("a series twice");
      sampled.insert(family);
      out.samples[series] = v;

      if (suffix == "_bucket") {
        if (!has_le) fail("a bucket without le");
        double bound = parse_value(le);
        auto& b = buckets[group];
        if (b.inf_seen) fail("a bucket after +Inf");
        if (!(bound > b.last_le)) fail("le not increasing");
        if (v < b.last_count) fail("bucket counts decrease");
        b.last_le = bound;
        b.last_count = v;
        if (std::isinf(bound)) {
          b.inf_seen = true;
          b.inf_count = v;
        }
      } else if (suffix == "_count") {
        counts[group] = v;
      } else if (suffix == "_sum") {
        sums.insert(group);
      } else if (has_le) {
        fail("le on a sample that is not a bucket");
      }
    } catch (const std::runtime_error& e) {
      std::string what = e.what();
      if (what.rfind("line ", 0) == 0) throw;
      fail(what);
    }
  }
  for (const auto& [group, b] : buckets) {
    if (!b.inf_seen) throw std::runtime_error(group + ": no +Inf bucket");
    auto c = counts.find(group);
    if (c == counts.end()) throw std::runtime_error(group + ": no _count");
    if (c->second != b.inf_count) throw std::runtime_error(group + ": +Inf bucket != _count");
    if (!sums.count(group)) throw std::runtime_error(group + ": no _sum");
  }
  for (const auto& [group, c] : counts)
    if (!buckets.count(group)) throw std::runtime_error(group + ": _count without buckets");
  for (const auto& [family, type] : out.types)
    if (!out.help.count(family)) throw std::runtime_error(family + ": TYPE without HELP");
  for (const auto& [family, h] : out.help)
    if (!out.types.count(family)) throw std::runtime_error(family + ": HELP without TYPE");
  return out;
}

} // namespace test_support
