// Integers in Z_{2^b} on the wire: b bits each, little-endian, no padding
// between values (the last byte is zero-filled). Used by DP-encoded updates
// and SecAgg masked inputs alike.
#ifndef TINYFED_PROTO_PACKING_H_
#define TINYFED_PROTO_PACKING_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tinyfed::proto {

// Values are reduced mod 2^bits; bits in [1, 32].
std::string PackBits(std::span<const uint32_t> values, int bits);
// INVALID_ARGUMENT unless `bytes` is exactly the packing of `count` values.
absl::StatusOr<std::vector<uint32_t>> UnpackBits(std::string_view bytes, int bits, size_t count);

}  // namespace tinyfed::proto

#endif  // TINYFED_PROTO_PACKING_H_
