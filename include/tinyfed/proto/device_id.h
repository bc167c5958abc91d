// The one rule for device ids, shared by gateways and the aggregator: 1 to
// 64 characters from [A-Za-z0-9._-], so an id is safe in file names, logs
// and SQL without quoting.
#ifndef TINYFED_PROTO_DEVICE_ID_H_
#define TINYFED_PROTO_DEVICE_ID_H_

#include <algorithm>
#include <cctype>
#include <string_view>

namespace tinyfed::proto {

inline constexpr size_t kMaxDeviceIdLength = 64;

inline bool IsValidDeviceId(std::string_view id) {
  return !id.empty() && id.size() <= kMaxDeviceIdLength && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

}  // namespace tinyfed::proto

#endif  // TINYFED_PROTO_DEVICE_ID_H_
