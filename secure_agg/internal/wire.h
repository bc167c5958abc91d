// Conversions between SecAgg values and their bytes in messages.
#ifndef TINYFED_SECURE_AGG_INTERNAL_WIRE_H_
#define TINYFED_SECURE_AGG_INTERNAL_WIRE_H_

#include <cstring>
#include <string>

#include "secure_agg/internal/crypto.h"

namespace tinyfed::secagg::internal {

inline std::string ToBytes(const Key& k) { return std::string(reinterpret_cast<const char*>(k.data()), k.size()); }

// `bytes` must be 32 long (checked by the caller).
inline Key FromBytes(const std::string& bytes) {
  Key k{};
  std::memcpy(k.data(), bytes.data(), std::min(bytes.size(), k.size()));
  return k;
}

}  // namespace tinyfed::secagg::internal

#endif  // TINYFED_SECURE_AGG_INTERNAL_WIRE_H_
