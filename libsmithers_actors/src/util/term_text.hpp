// Text from runs (names, labels, outputs, error messages, a command's
// stderr) shown on a terminal: control characters are escaped so that no
// value can move the cursor, recolour, retitle or clear the user's terminal.
#pragma once

#include <string>
#include <string_view>

namespace smithers::util {

/// `s` with every C0 control (U+0000-U+001F), DEL, C1 control
/// (U+0080-U+009F) and bidirectional control (U+200E, U+200F,
/// U+202A-U+202E, U+2066-U+2069) escaped: "\n", "\r", "\t", else "\x1b" /
/// "\u009b" / "\u202e"; bytes that are not UTF-8 become "\xNN". Everything
/// else is kept as is.
std::string term_text(std::string_view s);

} // namespace smithers::util
