#include "tinyfed/proto/packing.h"

#include "absl/strings/str_cat.h"

namespace tinyfed::proto {

std::string PackBits(std::span<const uint32_t> values, int bits) {
  std::string out;
  out.reserve((values.size() * static_cast<size_t>(bits) + 7) / 8);
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  uint64_t acc = 0;  // holds fewer than 8 pending bits between values
  int pending = 0;
  for (uint32_t v : values) {
    acc |= (uint64_t{v} & mask) << pending;
    pending += bits;
    for (; pending >= 8; pending -= 8, acc >>= 8) out.push_back(static_cast<char>(acc & 0xff));
  }
  if (pending > 0) out.push_back(static_cast<char>(acc & 0xff));
  return out;
}

absl::StatusOr<std::vector<uint32_t>> UnpackBits(std::string_view bytes, int bits, size_t count) {
  if (bits < 1 || bits > 32) return absl::InvalidArgumentError(absl::StrCat("bits must be in [1, 32], got ", bits));
  const size_t expected = (count * static_cast<size_t>(bits) + 7) / 8;
  if (bytes.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(bytes.size(), " packed bytes for ", count, " values of ", bits,
                                       " bits; expected ", expected));
  }
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  std::vector<uint32_t> out(count);
  uint64_t acc = 0;
  int available = 0;
  size_t next = 0;
  for (size_t i = 0; i < count; ++i) {
    for (; available < bits; available += 8) acc |= uint64_t{static_cast<uint8_t>(bytes[next++])} << available;
    out[i] = static_cast<uint32_t>(acc & mask);
    acc >>= bits;
    available -= bits;
  }
  return out;
}

}  // namespace tinyfed::proto
