#include "tinyfed/client/sample_store.h"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/sodium.h"
#include "tinyfed/base/status_macros.h"

namespace tinyfed::client {
namespace {

constexpr std::string_view kSegmentMagic = "TFSEG001";
constexpr std::string_view kSealedMagic = "TFSEAL01";
constexpr size_t kSealedRecordBytes = size_t{1} << 20;
constexpr size_t kMaxFeatures = 65536;
constexpr uint64_t kMaxSegmentBytes = uint64_t{1} << 30;

std::string EncodeSample(const Sample& s) {
  std::string out(8 + 4 * s.features.size(), '\0');
  const auto n = static_cast<uint32_t>(s.features.size());
  std::memcpy(out.data(), &s.label, 4);
  std::memcpy(out.data() + 4, &n, 4);
  std::memcpy(out.data() + 8, s.features.data(), 4 * s.features.size());
  return out;
}

absl::StatusOr<Sample> DecodeSample(std::string_view bytes) {
  Sample s;
  uint32_t n = 0;
  if (bytes.size() < 8) return absl::DataLossError("sample record too short");
  std::memcpy(&s.label, bytes.data(), 4);
  std::memcpy(&n, bytes.data() + 4, 4);
  if (n > kMaxFeatures || bytes.size() != 8 + 4 * static_cast<size_t>(n)) {
    return absl::DataLossError("sample record has an inconsistent length");
  }
  s.features.resize(n);
  std::memcpy(s.features.data(), bytes.data() + 8, 4 * static_cast<size_t>(n));
  return s;
}

}  // namespace

std::vector<Sample> ToSamples(const models::Dataset& data) {
  std::vector<Sample> samples(data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    const auto x = data.sample(i);
    samples[i].features.assign(x.begin(), x.end());
    samples[i].label = data.labels[i];
  }
  return samples;
}

SampleStore::SampleStore(std::filesystem::path dir, size_t max_samples, std::array<uint8_t, 32> key, base::Env& env)
    : dir_(std::move(dir)), env_(env), max_samples_(max_samples), key_(key) {}

SampleStore::~SampleStore() { sodium_memzero(key_.data(), key_.size()); }

absl::StatusOr<std::unique_ptr<SampleStore>> SampleStore::Open(const std::filesystem::path& dir, size_t max_samples,
                                                               base::Env& env) {
  if (max_samples == 0) return absl::InvalidArgumentError("a sample store needs room for at least one sample");
  TINYFED_RETURN_IF_ERROR(base::InitSodium());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
  // The device key: created once, readable only by its owner.
  std::array<uint8_t, 32> key{};
  auto key_bytes = env.ReadFile(dir / "device.key", 64);
  if (key_bytes.status().code() == absl::StatusCode::kNotFound) {
    crypto_secretstream_xchacha20poly1305_keygen(key.data());
    if (auto s = env.WriteFileAtomically(dir / "device.key",
                                         std::string_view(reinterpret_cast<const char*>(key.data()), key.size()), 0600);
        !s.ok()) {
      return s;
    }
  } else if (!key_bytes.ok()) {
    return key_bytes.status();
  } else if (key_bytes->size() != key.size()) {
    return absl::DataLossError(absl::StrCat((dir / "device.key").string(), " is not a 32-byte device key"));
  } else {
    std::memcpy(key.data(), key_bytes->data(), key.size());
    sodium_memzero(key_bytes->data(), key_bytes->size());
  }
  auto store = std::unique_ptr<SampleStore>(new SampleStore(dir, max_samples, key, env));
  sodium_memzero(key.data(), key.size());
  // The manifest names the live segments; with it intact, any other segment
  // is a leftover of an interrupted write or of a compaction and goes.
  auto manifest = env.ReadFile(dir / "manifest", 1 << 20);
  if (!manifest.ok() && manifest.status().code() != absl::StatusCode::kNotFound) return manifest.status();
  if (manifest.ok()) {
    for (absl::string_view line : absl::StrSplit(*manifest, '\n', absl::SkipEmpty())) {
      uint64_t seq = 0;
      const bool named = absl::StartsWith(line, "segment-") && absl::SimpleAtoi(line.substr(8), &seq);
      if (!named || std::find(store->segments_.begin(), store->segments_.end(), line) != store->segments_.end()) {
        return absl::DataLossError(
            absl::StrCat((dir / "manifest").string(), " is damaged (line '", absl::CHexEscape(line.substr(0, 40)),
                         "'); restore it from a backup, or move ", dir.string(), " away to start with an empty store"));
      }
      store->segments_.emplace_back(line);
    }
  }
  std::vector<std::string> unnamed;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("segment-", 0) != 0) continue;
    uint64_t seq = 0;
    if (absl::SimpleAtoi(name.substr(8), &seq)) store->next_segment_ = std::max(store->next_segment_, seq + 1);
    if (std::find(store->segments_.begin(), store->segments_.end(), name) == store->segments_.end()) {
      unnamed.push_back(name);
    }
  }
  // Without a manifest that names anything, nothing tells live segments
  // from leftovers: deleting them would lose samples, guessing could count
  // some twice. The store refuses to open instead.
  if (store->segments_.empty() && !unnamed.empty()) {
    std::sort(unnamed.begin(), unnamed.end());
    return absl::DataLossError(
        absl::StrCat((dir / "manifest").string(), manifest.ok() ? " names no segment" : " is missing", " but ",
                     unnamed.size(), " segment file(s) hold samples (", absl::StrJoin(unnamed, ", "),
                     "); restore the manifest from a backup, or "
                     "move ",
                     dir.string(), " away to start with an empty store"));
  }
  for (const auto& name : unnamed) std::filesystem::remove(dir / name, ec);
  for (const auto& name : store->segments_) {
    auto samples = store->ReadSegment(name);
    if (!samples.ok()) return samples.status();
    store->count_ += samples->size();
  }
  return store;
}

absl::Status SampleStore::WriteManifest(const std::vector<std::string>& segments) const {
  std::string text;
  for (const auto& s : segments) absl::StrAppend(&text, s, "\n");
  return env_.WriteFileAtomically(dir_ / "manifest", text, 0600);
}

absl::StatusOr<std::string> SampleStore::WriteSegment(std::span<const Sample> samples) {
  std::vector<std::string> records;
  records.reserve(samples.size());
  for (const Sample& sample : samples) records.push_back(EncodeSample(sample));
  const std::string file = SealRecords(kSegmentMagic, records);
  for (auto& r : records) sodium_memzero(r.data(), r.size());
  const std::string name = absl::StrCat("segment-", next_segment_++);
  if (auto s = env_.WriteFileAtomically(dir_ / name, file, 0600); !s.ok()) return s;
  return name;
}

absl::StatusOr<std::vector<Sample>> SampleStore::ReadSegment(const std::string& name) const {
  auto bytes = env_.ReadFile(dir_ / name, kMaxSegmentBytes);
  if (!bytes.ok()) {
    return absl::DataLossError(absl::StrCat("segment ", name, " named by the manifest: ", bytes.status().message()));
  }
  auto records = OpenRecords(kSegmentMagic, *bytes, absl::StrCat("segment ", name));
  if (!records.ok()) return records.status();
  std::vector<Sample> out;
  out.reserve(records->size());
  for (auto& record : *records) {
    auto sample = DecodeSample(record);
    sodium_memzero(record.data(), record.size());
    if (!sample.ok()) return sample.status();
    out.push_back(std::move(*sample));
  }
  return out;
}

std::string SampleStore::SealRecords(std::string_view magic, const std::vector<std::string>& records) const {
  std::string file(magic);
  std::array<uint8_t, crypto_secretstream_xchacha20poly1305_HEADERBYTES> header;
  crypto_secretstream_xchacha20poly1305_state state;
  crypto_secretstream_xchacha20poly1305_init_push(&state, header.data(), key_.data());
  file.append(reinterpret_cast<const char*>(header.data()), header.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const std::string& plain = records[i];
    std::string cipher(plain.size() + crypto_secretstream_xchacha20poly1305_ABYTES, '\0');
    const uint8_t tag = i + 1 == records.size() ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0;
    crypto_secretstream_xchacha20poly1305_push(&state, reinterpret_cast<uint8_t*>(cipher.data()), nullptr,
                                               reinterpret_cast<const uint8_t*>(plain.data()), plain.size(), nullptr, 0,
                                               tag);
    const auto len = static_cast<uint32_t>(cipher.size());
    file.append(reinterpret_cast<const char*>(&len), 4);
    file += cipher;
  }
  sodium_memzero(&state, sizeof(state));
  return file;
}

absl::StatusOr<std::vector<std::string>> SampleStore::OpenRecords(std::string_view magic, std::string_view bytes,
                                                                  const std::string& what) const {
  const size_t header_end = magic.size() + crypto_secretstream_xchacha20poly1305_HEADERBYTES;
  if (bytes.size() < header_end || bytes.substr(0, magic.size()) != magic) {
    return absl::DataLossError(absl::StrCat(what, " is not a file of this store"));
  }
  crypto_secretstream_xchacha20poly1305_state state;
  if (crypto_secretstream_xchacha20poly1305_init_pull(
          &state, reinterpret_cast<const uint8_t*>(bytes.data() + magic.size()), key_.data()) != 0) {
    return absl::DataLossError(absl::StrCat(what, " has a bad header"));
  }
  std::vector<std::string> out;
  size_t pos = header_end;
  bool final_seen = false;
  while (pos < bytes.size()) {
    uint32_t len = 0;
    if (final_seen || pos + 4 > bytes.size()) return absl::DataLossError(absl::StrCat(what, " is damaged"));
    std::memcpy(&len, bytes.data() + pos, 4);
    pos += 4;
    if (len < crypto_secretstream_xchacha20poly1305_ABYTES || len > bytes.size() - pos) {
      return absl::DataLossError(absl::StrCat(what, " is truncated"));
    }
    std::string plain(len - crypto_secretstream_xchacha20poly1305_ABYTES, '\0');
    uint8_t tag = 0;
    if (crypto_secretstream_xchacha20poly1305_pull(&state, reinterpret_cast<uint8_t*>(plain.data()), nullptr, &tag,
                                                   reinterpret_cast<const uint8_t*>(bytes.data() + pos), len, nullptr,
                                                   0) != 0) {
      for (auto& r : out) sodium_memzero(r.data(), r.size());
      return absl::DataLossError(absl::StrCat(what, " failed authentication (tampered or damaged)"));
    }
    pos += len;
    final_seen = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
    out.push_back(std::move(plain));
  }
  sodium_memzero(&state, sizeof(state));
  if (!final_seen) {
    for (auto& r : out) sodium_memzero(r.data(), r.size());
    return absl::DataLossError(absl::StrCat(what, " ends before its final record"));
  }
  return out;
}

absl::Status SampleStore::WriteSealed(const std::string& name, std::string_view plaintext) {
  if (name.empty() || name.rfind("segment-", 0) == 0 || name == "manifest" || name == "device.key" ||
      name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("'", name, "' is not a usable sealed file name"));
  }
  // Records of at most 1 MiB keep secretstream's buffers small.
  std::vector<std::string> records;
  for (size_t pos = 0; pos < plaintext.size() || records.empty(); pos += kSealedRecordBytes) {
    records.emplace_back(plaintext.substr(pos, kSealedRecordBytes));
  }
  const std::string file = SealRecords(kSealedMagic, records);
  for (auto& r : records) sodium_memzero(r.data(), r.size());
  return env_.WriteFileAtomically(dir_ / name, file, 0600);
}

absl::StatusOr<std::string> SampleStore::ReadSealed(const std::string& name) const {
  auto bytes = env_.ReadFile(dir_ / name, kMaxSegmentBytes);
  if (!bytes.ok()) return bytes.status();
  auto records = OpenRecords(kSealedMagic, *bytes, absl::StrCat("sealed file ", name));
  if (!records.ok()) return records.status();
  std::string out;
  for (auto& r : *records) {
    out += r;
    sodium_memzero(r.data(), r.size());
  }
  return out;
}

absl::Status SampleStore::Add(std::span<const Sample> samples) {
  if (samples.empty()) return absl::OkStatus();
  for (const Sample& s : samples) {
    if (s.features.empty() || s.features.size() > kMaxFeatures) {
      return absl::InvalidArgumentError(
          absl::StrCat("a sample has ", s.features.size(), " features; allowed 1 to ", kMaxFeatures));
    }
    if (!std::all_of(s.features.begin(), s.features.end(), [](float v) { return std::isfinite(v); })) {
      return absl::InvalidArgumentError("a sample has a feature that is not finite");
    }
  }
  auto name = WriteSegment(samples);
  if (!name.ok()) return name.status();
  std::vector<std::string> segments = segments_;
  segments.push_back(*name);
  if (auto s = WriteManifest(segments); !s.ok()) return s;
  segments_ = std::move(segments);
  count_ += samples.size();
  if (count_ <= max_samples_ && segments_.size() <= 64) return absl::OkStatus();
  // Compaction: keep the newest max_samples in one segment.
  auto all = ReadAll();
  if (!all.ok()) return all.status();
  auto compacted = WriteSegment(*all);
  if (!compacted.ok()) return compacted.status();
  if (auto s = WriteManifest({*compacted}); !s.ok()) return s;
  std::error_code ec;
  for (const auto& old : segments_) std::filesystem::remove(dir_ / old, ec);
  segments_ = {*compacted};
  count_ = all->size();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Sample>> SampleStore::ReadAll() const {
  std::vector<Sample> all;
  for (const auto& name : segments_) {
    auto samples = ReadSegment(name);
    if (!samples.ok()) return samples.status();
    for (auto& s : *samples) all.push_back(std::move(s));
  }
  if (all.size() > max_samples_) all.erase(all.begin(), all.end() - static_cast<std::ptrdiff_t>(max_samples_));
  return all;
}

}  // namespace tinyfed::client
