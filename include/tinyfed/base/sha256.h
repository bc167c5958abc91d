// SHA-256, the one hash of the project: bundle and download digests, model
// references, release metadata.
#ifndef TINYFED_BASE_SHA256_H_
#define TINYFED_BASE_SHA256_H_

#include <string>
#include <string_view>

namespace tinyfed::base {

// The 32 raw bytes of the digest of `data`.
std::string Sha256(std::string_view data);

}  // namespace tinyfed::base

#endif  // TINYFED_BASE_SHA256_H_
