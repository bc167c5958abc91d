// Text a device sent (a model status, a claimed id, a reason), made fit for
// a log line: at most `max_bytes` of it, every byte outside printable ASCII
// and every quote and backslash escaped (\n, \x1b, ...), and what was cut
// said. Such text cannot end a log line, move a terminal's cursor or pose as
// a line of the aggregator's own.
#ifndef TINYFED_PROTO_DEVICE_TEXT_H_
#define TINYFED_PROTO_DEVICE_TEXT_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace tinyfed::proto {

inline constexpr size_t kMaxLoggedDeviceText = 160;

std::string DeviceText(std::string_view text, size_t max_bytes = kMaxLoggedDeviceText);

}  // namespace tinyfed::proto

#endif  // TINYFED_PROTO_DEVICE_TEXT_H_
