// Embeddings of the stored samples under the installed backbone. The backbone
// is frozen, so a sample's embedding changes only when a new backbone
// arrives: the cache is keyed by the backbone's identity and starts empty
// when it differs. It is sealed under the device key like the samples, since
// an embedding says nearly as much about a patient as the sample does.
#ifndef TINYFED_CLIENT_EMBEDDING_CACHE_H_
#define TINYFED_CLIENT_EMBEDDING_CACHE_H_

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/client/sample_store.h"
#include "tinyfed/models/interpreter.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::client {

using SampleKey = std::array<uint8_t, 16>;

// BLAKE2b of the sample's features and label: the same sample always has the same key.
SampleKey KeyOf(const Sample& sample);
// SHA-256 over the backbone graph and input spec: what the embeddings depend on.
std::string BackboneId(const v1::ModelBundle& bundle);

class EmbeddingCache {
 public:
  static constexpr const char* kFileName = "embeddings";
  // The cache sealed in `store`, or an empty one if it is missing, damaged or
  // was computed by another backbone.
  static EmbeddingCache Load(const SampleStore& store, const std::string& backbone_id);

  // Rows of interpreter.embedding_size() values for `samples`, computing the
  // ones not cached. The cache then holds exactly these samples.
  std::vector<float> Embed(std::span<const Sample> samples, models::Interpreter& interpreter);
  absl::Status Save(SampleStore& store) const;

  size_t computed() const { return computed_; }  // by the last Embed
  size_t size() const { return entries_.size(); }

 private:
  explicit EmbeddingCache(std::string backbone_id) : backbone_id_(std::move(backbone_id)) {}
  std::string backbone_id_;
  size_t dimension_ = 0;
  std::map<SampleKey, std::vector<float>> entries_;
  size_t computed_ = 0;
};

}  // namespace tinyfed::client

#endif  // TINYFED_CLIENT_EMBEDDING_CACHE_H_
