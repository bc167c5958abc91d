#include "tinyfed/client/embedding_cache.h"

#include <sodium.h>

#include <cstring>

#include "tinyfed/base/sha256.h"
#include "tinyfed/models/signing.h"

namespace tinyfed::client {
namespace {
constexpr std::string_view kMagic = "TFEMB001";
}  // namespace

SampleKey KeyOf(const Sample& sample) {
  SampleKey key;
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, key.size());
  crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(&sample.label), sizeof(sample.label));
  crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(sample.features.data()),
                            sample.features.size() * sizeof(float));
  crypto_generichash_final(&state, key.data(), key.size());
  return key;
}

std::string BackboneId(const v1::ModelBundle& bundle) {
  std::string bytes;
  bundle.backbone().SerializeToString(&bytes);
  bytes += bundle.input().SerializeAsString();
  return base::Sha256(bytes);
}

EmbeddingCache EmbeddingCache::Load(const SampleStore& store, const std::string& backbone_id) {
  EmbeddingCache cache(backbone_id);
  auto bytes = store.ReadSealed(kFileName);
  if (!bytes.ok()) return cache;
  const std::string_view b = *bytes;
  const size_t head = kMagic.size() + backbone_id.size() + 8;
  if (b.size() < head || b.substr(0, kMagic.size()) != kMagic ||
      b.substr(kMagic.size(), backbone_id.size()) != backbone_id) {
    return cache;  // another backbone's embeddings: start over
  }
  uint32_t dimension = 0, count = 0;
  std::memcpy(&dimension, b.data() + kMagic.size() + backbone_id.size(), 4);
  std::memcpy(&count, b.data() + kMagic.size() + backbone_id.size() + 4, 4);
  const size_t entry = 16 + 4 * static_cast<size_t>(dimension);
  if (dimension == 0 || (b.size() - head) / entry != count || (b.size() - head) % entry != 0) return cache;
  cache.dimension_ = dimension;
  for (size_t i = 0; i < count; ++i) {
    const char* p = b.data() + head + i * entry;
    SampleKey key;
    std::memcpy(key.data(), p, 16);
    std::vector<float> e(dimension);
    std::memcpy(e.data(), p + 16, 4 * static_cast<size_t>(dimension));
    cache.entries_.emplace(key, std::move(e));
  }
  sodium_memzero(bytes->data(), bytes->size());
  return cache;
}

std::vector<float> EmbeddingCache::Embed(std::span<const Sample> samples, models::Interpreter& interpreter) {
  const size_t dimension = interpreter.embedding_size();
  if (dimension != dimension_) entries_.clear();
  dimension_ = dimension;
  computed_ = 0;
  std::map<SampleKey, std::vector<float>> kept;
  std::vector<float> rows;
  rows.reserve(samples.size() * dimension);
  for (const Sample& s : samples) {
    const SampleKey key = KeyOf(s);
    auto it = entries_.find(key);
    std::vector<float> e;
    if (it != entries_.end()) {
      e = std::move(it->second);
      entries_.erase(it);
    } else if (auto k = kept.find(key); k != kept.end()) {
      e = k->second;  // the same sample stored twice
    } else {
      interpreter.SetInput(s.features);
      interpreter.Invoke();
      const auto emb = interpreter.embedding();
      e.assign(emb.begin(), emb.end());
      ++computed_;
    }
    rows.insert(rows.end(), e.begin(), e.end());
    kept.emplace(key, std::move(e));
  }
  for (auto& [key, e] : entries_) sodium_memzero(e.data(), e.size() * sizeof(float));
  entries_ = std::move(kept);
  return rows;
}

absl::Status EmbeddingCache::Save(SampleStore& store) const {
  std::string bytes(kMagic);
  bytes += backbone_id_;
  const auto dimension = static_cast<uint32_t>(dimension_);
  const auto count = static_cast<uint32_t>(entries_.size());
  bytes.append(reinterpret_cast<const char*>(&dimension), 4);
  bytes.append(reinterpret_cast<const char*>(&count), 4);
  for (const auto& [key, e] : entries_) {
    bytes.append(reinterpret_cast<const char*>(key.data()), key.size());
    bytes.append(reinterpret_cast<const char*>(e.data()), e.size() * sizeof(float));
  }
  absl::Status s = store.WriteSealed(kFileName, bytes);
  sodium_memzero(bytes.data(), bytes.size());
  return s;
}

}  // namespace tinyfed::client
