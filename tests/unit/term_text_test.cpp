#include <catch2/catch.hpp>

#include "util/term_text.hpp"

#include <string>

using smithers::util::term_text;

TEST_CASE("term_text escapes what a terminal would act on and keeps the rest", "[term_text]") {
  struct row {
    std::string in, out;
  };
  const row rows[] = {
      {"plain text, 100% ok", "plain text, 100% ok"},
      {"", ""},
      {"line\nnext", "line\\nnext"},
      {"tab\there\r", "tab\\there\\r"},
      {"\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"},
      {"\x1b]0;title\x07", "\\x1b]0;title\\x07"},
      {std::string("nul\0byte", 8), "nul\\x00byte"},
      {"del\x7f", "del\\x7f"},
      {"\xc2\x9b" "2J", "\\u009b2J"},                // C1 CSI
      {"\xc2\x85", "\\u0085"},                         // NEL
      {"caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80"},
      {"\xc2\xa0nbsp", "\xc2\xa0nbsp"},               // U+00A0 is no control
      {"bad \xff byte", "bad \\xff byte"},
      {"cut \xe2\x9c", "cut \\xe2\\x9c"},              // truncated sequence
      {"overlong \xc0\xaf", "overlong \\xc0\\xaf"},
      {"surrogate \xed\xa0\x80", "surrogate \\xed\\xa0\\x80"},
      {"abc\xe2\x80\xaegpj.exe", "abc\\u202egpj.exe"},    // right-to-left override
      {"\xe2\x81\xa6x\xe2\x81\xa9", "\\u2066x\\u2069"}, // isolates
      {"\xe2\x80\x94 dash", "\xe2\x80\x94 dash"},        // U+2014 stays
  };
  for (const auto& r : rows) {
    INFO(r.in);
    CHECK(term_text(r.in) == r.out);
  }
}

TEST_CASE("term_text output holds no control byte, whatever the input", "[term_text]") {
  std::string all;
  for (int b = 0; b < 256; ++b)
    all += static_cast<char>(b);
  for (int b = 0; b < 256; ++b) {
    all += '\xc2';
    all += static_cast<char>(b);
  }
  auto out = term_text(all);
  for (unsigned char c : out)
    CHECK((c >= 0x20 && c != 0x7f));
  CHECK(out.find("\xc2\x80") == std::string::npos);
  CHECK(out.find("\xc2\x9f") == std::string::npos);
}
