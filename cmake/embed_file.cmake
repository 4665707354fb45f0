# cmake -DINPUT=file -DOUTPUT=file.cpp -P embed_file.cmake: a C++ source
# defining `std::string_view smithers::embedded::dashboard_page()` with the
# file's bytes, written as hex so no byte of the page can end the literal.
file(READ ${INPUT} hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${hex}")
# Line breaks every 16 bytes keep the generated file readable by tools.
string(REGEX REPLACE "(('[^']*',){16})" "\\1\n" bytes "${bytes}")
file(WRITE ${OUTPUT} "// Generated from ${INPUT} by cmake/embed_file.cmake; do not edit.
#include <string_view>

namespace smithers::embedded {
namespace {
const char page[] = {
${bytes}'\\0'};
} // namespace
std::string_view dashboard_page() {
  return {page, ${size}};
}
} // namespace smithers::embedded
")
