#include "tinyfed/base/sha256.h"

#include <sodium.h>

namespace tinyfed::base {

std::string Sha256(std::string_view data) {
  std::string digest(crypto_hash_sha256_BYTES, '\0');
  crypto_hash_sha256(reinterpret_cast<unsigned char*>(digest.data()),
                     reinterpret_cast<const unsigned char*>(data.data()), data.size());
  return digest;
}

}  // namespace tinyfed::base
