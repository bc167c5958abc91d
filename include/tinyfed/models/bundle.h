// Model bundle files: read, write and validate.
//
// A bundle file is a 56-byte header followed by a serialized
// tinyfed.v1.ModelBundle (proto/tinyfed/v1/bundle.proto):
//   bytes  0..7   magic "TINYFEDB"
//   bytes  8..11  container version, little endian (1)
//   bytes 12..15  zero
//   bytes 16..23  payload length, little endian
//   bytes 24..55  SHA-256 of the payload
// The checksum catches storage and transfer corruption; authenticity is the
// job of the signed metadata that travels with a published model.
//
// Nothing read from a file is used before ValidateBundle accepts it; every
// rejection is INVALID_ARGUMENT naming the field and value at fault.
#ifndef TINYFED_MODELS_BUNDLE_H_
#define TINYFED_MODELS_BUNDLE_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tinyfed/base/env.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::models {

inline constexpr uint32_t kBundleFormatVersion = 1;
inline constexpr size_t kBundleHeaderBytes = 56;
inline constexpr uint64_t kMaxBundleFileBytes = uint64_t{256} << 20;

// Checks the whole bundle: graph, weights, quantization, head, input spec,
// label names, and the resource bounds in models/internal/graph.h.
absl::Status ValidateBundle(const v1::ModelBundle& bundle);

// The file bytes for a bundle (header + payload). Does not validate.
std::string EncodeBundleFile(const v1::ModelBundle& bundle);

// Parses and validates file bytes. Checks the size limit, magic, version,
// length and checksum before the protobuf parser sees a byte.
absl::StatusOr<v1::ModelBundle> DecodeBundleFile(std::string_view bytes);

// Parses and validates a bare serialized ModelBundle (no header).
absl::StatusOr<v1::ModelBundle> DecodeBundlePayload(std::string_view payload);

// NOT_FOUND for a missing file; otherwise as DecodeBundleFile.
absl::StatusOr<v1::ModelBundle> ReadBundleFile(const std::filesystem::path& path,
                                               base::Env& env = base::Env::Default());

// Validates, then writes atomically: a crash leaves either the old file or the
// new one, never a mix (temporary file, fsync, rename).
absl::Status WriteBundleFile(const std::filesystem::path& path, const v1::ModelBundle& bundle,
                             base::Env& env = base::Env::Default());

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_BUNDLE_H_
