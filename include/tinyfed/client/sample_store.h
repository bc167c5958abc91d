// A gateway's labelled samples, encrypted at rest.
//
// Layout under the store directory:
//   device.key            32-byte key, mode 0600, created on first open
//   manifest              the live segments, in order (written atomically)
//   segment-<n>           one libsodium secretstream (XChaCha20-Poly1305):
//                         a header, one message per sample, a final tag
//   <other names>         sealed files (WriteSealed), the same format
// Add() writes one new segment and then a new manifest, each atomically, so a
// power loss at any moment leaves the samples of the old manifest or of the
// new one, never a mix; segments the manifest does not name are removed on
// open. A missing or damaged manifest with segments on disk is DATA_LOSS
// naming the files: the store never deletes samples it cannot account for. When
// more than `max_samples` are stored the oldest are dropped (the replay
// buffer is bounded) by rewriting them into one segment.
//
// Not thread-safe. The key is wiped from memory on destruction.
#ifndef TINYFED_CLIENT_SAMPLE_STORE_H_
#define TINYFED_CLIENT_SAMPLE_STORE_H_

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/base/env.h"
#include "tinyfed/models/dataset.h"

namespace tinyfed::client {

struct Sample {
  std::vector<float> features;
  int32_t label = 0;
};

// Every row of a dataset as a sample (raw features, as Predict takes them).
std::vector<Sample> ToSamples(const models::Dataset& data);

class SampleStore {
 public:
  // Creates the directory and key if missing. DATA_LOSS for a segment that
  // fails authentication (tampering or a damaged disk) and for segments
  // without a manifest that names them; INVALID_ARGUMENT for
  // max_samples of 0. Files are read and written through `env`, which must
  // outlive the store (the device key itself comes from libsodium, never
  // from an injected source).
  static absl::StatusOr<std::unique_ptr<SampleStore>> Open(const std::filesystem::path& dir, size_t max_samples,
                                                           base::Env& env = base::Env::Default());
  ~SampleStore();
  SampleStore(const SampleStore&) = delete;
  SampleStore& operator=(const SampleStore&) = delete;

  // Appends samples (at most 65,536 features each, finite values).
  absl::Status Add(std::span<const Sample> samples);
  // Oldest first, at most max_samples.
  absl::StatusOr<std::vector<Sample>> ReadAll() const;
  size_t size() const { return count_; }

  // Other files sealed under the device key the same way (the embedding
  // cache is one), written atomically with mode 0600. ReadSealed gives
  // NOT_FOUND for a missing file and DATA_LOSS for one that fails
  // authentication. Names must not clash with the store's own files.
  absl::Status WriteSealed(const std::string& name, std::string_view plaintext);
  absl::StatusOr<std::string> ReadSealed(const std::string& name) const;

 private:
  SampleStore(std::filesystem::path dir, size_t max_samples, std::array<uint8_t, 32> key, base::Env& env);
  absl::Status WriteManifest(const std::vector<std::string>& segments) const;
  absl::StatusOr<std::string> WriteSegment(std::span<const Sample> samples);
  absl::StatusOr<std::vector<Sample>> ReadSegment(const std::string& name) const;
  // A secretstream of records behind `magic`; `what` names the file in errors.
  std::string SealRecords(std::string_view magic, const std::vector<std::string>& records) const;
  absl::StatusOr<std::vector<std::string>> OpenRecords(std::string_view magic, std::string_view bytes,
                                                       const std::string& what) const;

  std::filesystem::path dir_;
  base::Env& env_;
  size_t max_samples_;
  std::array<uint8_t, 32> key_;
  std::vector<std::string> segments_;
  size_t count_ = 0;
  uint64_t next_segment_ = 0;
};

}  // namespace tinyfed::client

#endif  // TINYFED_CLIENT_SAMPLE_STORE_H_
