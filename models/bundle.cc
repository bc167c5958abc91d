#include "tinyfed/models/bundle.h"

#include <sodium.h>

#include <array>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "models/internal/graph.h"
#include "tinyfed/base/file_io.h"

namespace tinyfed::models {
namespace {

constexpr std::string_view kMagic = "TINYFEDB";
constexpr uint32_t kContainerVersion = 1;

void PutLe(uint64_t v, int bytes, char* out) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint64_t GetLe(const char* in, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<uint8_t>(in[i])} << (8 * i);
  return v;
}

std::array<unsigned char, crypto_hash_sha256_BYTES> Sha256(std::string_view data) {
  std::array<unsigned char, crypto_hash_sha256_BYTES> digest{};
  crypto_hash_sha256(digest.data(), reinterpret_cast<const unsigned char*>(data.data()), data.size());
  return digest;
}

}  // namespace

absl::Status ValidateBundle(const v1::ModelBundle& bundle) { return internal::AnalyzeBundle(bundle).status(); }

std::string EncodeBundleFile(const v1::ModelBundle& bundle) {
  const std::string payload = bundle.SerializeAsString();
  std::string file(kBundleHeaderBytes, '\0');
  std::memcpy(file.data(), kMagic.data(), kMagic.size());
  PutLe(kContainerVersion, 4, file.data() + 8);
  PutLe(payload.size(), 8, file.data() + 16);
  const auto digest = Sha256(payload);
  std::memcpy(file.data() + 24, digest.data(), digest.size());
  file += payload;
  return file;
}

absl::StatusOr<v1::ModelBundle> DecodeBundlePayload(std::string_view payload) {
  if (payload.size() > kMaxBundleFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("bundle payload of ", payload.size(), " bytes exceeds the limit of ", kMaxBundleFileBytes));
  }
  v1::ModelBundle bundle;
  if (!bundle.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::InvalidArgumentError("bundle payload is not a valid ModelBundle message");
  }
  if (auto s = ValidateBundle(bundle); !s.ok()) return s;
  return bundle;
}

absl::StatusOr<v1::ModelBundle> DecodeBundleFile(std::string_view bytes) {
  if (bytes.size() > kMaxBundleFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("bundle of ", bytes.size(), " bytes exceeds the limit of ", kMaxBundleFileBytes));
  }
  if (bytes.size() < kBundleHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("bundle is ", bytes.size(), " bytes, shorter than its ",
                                                   kBundleHeaderBytes, "-byte header (truncated?)"));
  }
  if (bytes.substr(0, kMagic.size()) != kMagic) {
    return absl::InvalidArgumentError("not a tinyfed bundle: bad magic bytes");
  }
  const uint64_t version = GetLe(bytes.data() + 8, 4);
  if (version != kContainerVersion || GetLe(bytes.data() + 12, 4) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bundle container version ", version, " is not supported (expected ", kContainerVersion, ")"));
  }
  const uint64_t length = GetLe(bytes.data() + 16, 8);
  if (length != bytes.size() - kBundleHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("bundle header announces ", length,
                                                   " payload bytes but the file has ",
                                                   bytes.size() - kBundleHeaderBytes, " (truncated or extended)"));
  }
  const std::string_view payload = bytes.substr(kBundleHeaderBytes);
  const auto digest = Sha256(payload);
  if (sodium_memcmp(digest.data(), bytes.data() + 24, digest.size()) != 0) {
    return absl::InvalidArgumentError("bundle checksum mismatch: the file is corrupted");
  }
  return DecodeBundlePayload(payload);
}

absl::StatusOr<v1::ModelBundle> ReadBundleFile(const std::filesystem::path& path, base::Env& env) {
  auto bytes = env.ReadFile(path, kMaxBundleFileBytes);
  if (!bytes.ok()) return bytes.status();
  auto bundle = DecodeBundleFile(*bytes);
  if (!bundle.ok()) {
    return absl::Status(bundle.status().code(), absl::StrCat(path.string(), ": ", bundle.status().message()));
  }
  return bundle;
}

absl::Status WriteBundleFile(const std::filesystem::path& path, const v1::ModelBundle& bundle, base::Env& env) {
  if (auto s = ValidateBundle(bundle); !s.ok()) return s;
  return env.WriteFileAtomically(path, EncodeBundleFile(bundle));
}

}  // namespace tinyfed::models
