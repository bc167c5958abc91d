#include "tinyfed/proto/packing.h"

#include "absl/strings/str_cat.h"

namespace tinyfed::proto {

std::string PackBits(std::span<const uint32_t> values, int bits) {
  if (bits % 8 == 0) {  // whole bytes: the common 8/16/24/32-bit cases, no bit shuffling
    const size_t width = static_cast<size_t>(bits / 8);
    std::string out(values.size() * width, '\0');
    for (size_t i = 0; i < values.size(); ++i)
      for (size_t b = 0; b < width; ++b) out[i * width + b] = static_cast<char>(values[i] >> (8 * b));
    return out;
  }
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
    return absl::InvalidArgumentError(
        absl::StrCat(bytes.size(), " packed bytes for ", count, " values of ", bits, " bits; expected ", expected));
  }
  std::vector<uint32_t> out(count);
  if (bits % 8 == 0) {
    const size_t width = static_cast<size_t>(bits / 8);
    for (size_t i = 0; i < count; ++i) {
      uint32_t v = 0;
      for (size_t b = 0; b < width; ++b) v |= uint32_t{static_cast<uint8_t>(bytes[i * width + b])} << (8 * b);
      out[i] = v;
    }
    return out;
  }
  const uint64_t mask = (uint64_t{1} << bits) - 1;
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
