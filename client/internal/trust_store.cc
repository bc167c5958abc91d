#include "client/internal/trust_store.h"

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/status_macros.h"

namespace tinyfed::client::internal {

using absl::StrCat;

absl::StatusOr<std::vector<models::TrustedRoot>> LoadTrustChain(const ClientConfig& config, base::Env& env) {
  TINYFED_ASSIGN_OR_RETURN(std::string pinned_bytes, env.ReadFile(config.trusted_root, 2 * models::kMaxMetadataBytes));
  v1::SignedMetadata pinned_root;
  if (!pinned_root.ParseFromString(pinned_bytes)) {
    return absl::InvalidArgumentError(StrCat(config.trusted_root.string(), " is not signed root metadata"));
  }
  auto trusted = models::TrustedRoot::Pin(pinned_root);
  if (!trusted.ok()) {
    return absl::Status(trusted.status().code(),
                        StrCat(config.trusted_root.string(), ": ", trusted.status().message()));
  }
  std::vector<models::TrustedRoot> history = {*trusted};
  for (uint64_t v = trusted->root().version() + 1;; ++v) {
    const auto file = models::RootFile(config.data_dir / "roots", v);
    auto bytes = env.ReadFile(file, 2 * models::kMaxMetadataBytes);
    if (!bytes.ok() && bytes.status().code() == absl::StatusCode::kNotFound) break;
    v1::SignedMetadata next;
    absl::Status s = !bytes.ok()                    ? bytes.status()
                     : next.ParseFromString(*bytes) ? trusted->Advance(next)
                                                    : absl::InvalidArgumentError("not signed metadata");
    if (!s.ok()) return absl::DataLossError(StrCat(file.string(), " fails verification: ", s.message()));
    history.push_back(*trusted);
  }
  return history;
}

void AdvanceRoots(GatewayState& g, const google::protobuf::RepeatedPtrField<v1::SignedMetadata>& roots) {
  for (const v1::SignedMetadata& next : roots) {
    auto parsed = models::ParseRoot(next);
    if (parsed.ok() && parsed->version() <= g.trusted->root().version()) continue;
    absl::Status s = parsed.ok() ? g.trusted->Advance(next) : parsed.status();
    if (s.ok()) s = models::WriteRoot(g.config.data_dir / "roots", next, g.env);
    if (!s.ok()) {
      absl::MutexLock lock(&g.mu);
      g.model_status = StrCat("root refused: ", s.message());
      spdlog::warn("{}: {}", g.config.device_id, g.model_status);
      return;
    }
    spdlog::info("{}: trusts root v{} now", g.config.device_id, g.trusted->root().version());
  }
}

}  // namespace tinyfed::client::internal
