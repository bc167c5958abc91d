#include "client/internal/model_download.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/internal/personal_head.h"
#include "spdlog/spdlog.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/sha256.h"

namespace tinyfed::client::internal {
namespace {

using absl::StrCat;

// Appends and flushes to disk, so a download survives a power cut chunk by chunk.
absl::Status AppendDurably(const std::filesystem::path& path, std::string_view data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(StrCat("cannot open ", path.string(), ": ", std::strerror(errno)));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return absl::InternalError(StrCat("cannot write ", path.string(), ": ", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fdatasync(fd) == 0;
  ::close(fd);
  if (!synced) return absl::InternalError(StrCat("cannot sync ", path.string()));
  return absl::OkStatus();
}

}  // namespace

absl::Status UpdateModel(GatewayState& g, const v1::ModelRef& ref, RoundTimings* t) {
  const ClientConfig& config = g.config;
  const auto& dir = config.data_dir;
  const auto partial = dir / "download.partial";
  const auto meta = dir / "download.meta";
  const std::string expected_meta = StrCat(ref.version(), " ", absl::BytesToHexString(ref.download_sha256()), "\n");
  auto refuse = [&](absl::Status s) {
    std::error_code ec;
    std::filesystem::remove(partial, ec);
    std::filesystem::remove(meta, ec);
    absl::MutexLock lock(&g.mu);
    g.model_status = StrCat("model v", ref.version(), " refused: ", s.message());
    spdlog::warn("{}: {}", config.device_id, g.model_status);
    return s;
  };
  // The gateway's own disk failed (full, read-only): the model is fine and
  // is tried again next round, resuming what was downloaded.
  auto not_stored = [&](absl::Status s) {
    absl::MutexLock lock(&g.mu);
    g.model_status = StrCat("model v", ref.version(), " not installed: ", s.message());
    spdlog::warn("{}: {}", config.device_id, g.model_status);
    return s;
  };
  if (ref.download_size() == 0 || ref.download_size() > (uint64_t{1} << 30)) {
    return refuse(absl::InvalidArgumentError(StrCat("announced size ", ref.download_size(), " is not plausible")));
  }
  auto current_meta = g.env.ReadFile(meta, 4096);
  std::error_code ec;
  if (!current_meta.ok() || *current_meta != expected_meta) {
    std::filesystem::remove(partial, ec);
    if (auto s = g.env.WriteFileAtomically(meta, expected_meta); !s.ok()) return not_stored(s);
  }
  uint64_t have = std::filesystem::exists(partial, ec) ? std::filesystem::file_size(partial, ec) : 0;
  if (have > ref.download_size()) {
    std::filesystem::remove(partial, ec);
    have = 0;
  }
  while (have < ref.download_size()) {
    v1::ModelChunkRequest request;
    *request.mutable_header() = g.Header(0, v1::PHASE_MODEL_DOWNLOAD);
    request.set_version(ref.version());
    request.set_offset(have);
    const absl::Time start = absl::Now();
    auto chunk = g.transport->GetModelChunk(request);
    t->transport += absl::Now() - start;
    if (!chunk.ok()) return chunk.status();  // a link problem: resume next time
    // Endless data: more bytes than announced, or a chunk for another model.
    if (chunk->version() != ref.version() || chunk->offset() != have || chunk->total_size() != ref.download_size() ||
        chunk->download_sha256() != ref.download_sha256() || chunk->data().empty() ||
        chunk->data().size() > ref.download_size() - have) {
      return refuse(absl::DataLossError("the server sent a chunk that does not match the announced model"));
    }
    if (auto s = AppendDurably(partial, chunk->data()); !s.ok()) return not_stored(s);
    have += chunk->data().size();
  }
  auto blob = g.env.ReadFile(partial, ref.download_size());
  if (!blob.ok()) return not_stored(blob.status());
  if (base::Sha256(*blob) != ref.download_sha256()) {
    return refuse(absl::DataLossError("the download does not match its announced SHA-256"));
  }
  v1::SignedBundle signed_bundle;
  if (!signed_bundle.ParseFromString(*blob)) return refuse(absl::InvalidArgumentError("not a signed bundle"));
  v1::ReleaseMetadata installed;
  std::optional<std::pair<std::string, uint32_t>> installed_task;  // input shape, classes
  {
    absl::MutexLock lock(&g.mu);
    installed = g.release;
    if (g.interpreter)
      installed_task.emplace(g.bundle.input().shape().SerializeAsString(), g.bundle.head().num_classes());
  }
  auto verified =
      g.trusted->VerifyModel(signed_bundle, installed.model_version() == 0 ? nullptr : &installed, g.env.Now());
  if (!verified.ok()) return refuse(verified.status());
  if (verified->release.model_version() != ref.version()) {
    return refuse(absl::PermissionDeniedError(
        StrCat("signed as v", verified->release.model_version(), ", announced as v", ref.version())));
  }
  // A model for another task (other inputs or classes) would turn every
  // stored sample into garbage for it.
  if (installed_task && *installed_task != std::pair(verified->bundle.input().shape().SerializeAsString(),
                                                     verified->bundle.head().num_classes())) {
    return refuse(absl::FailedPreconditionError("it is a model for another task (inputs or classes differ)"));
  }
  auto runnable = models::Interpreter::Create(verified->bundle);
  if (!runnable.ok()) return refuse(runnable.status());
  if (auto s = g.env.WriteFileAtomically(config.data_dir / "model.signed", *blob); !s.ok()) return not_stored(s);
  std::filesystem::remove(partial, ec);
  std::filesystem::remove(meta, ec);
  std::filesystem::remove(config.data_dir / "model.signed.damaged", ec);
  {
    absl::MutexLock lock(&g.mu);
    g.Install(std::move(*verified), std::move(*runnable));
    spdlog::info("{}: installed model v{} (release {})", config.device_id, g.version, g.release.version());
  }
  // The model is in; a personal head that cannot be fitted leaves the
  // global head serving.
  if (absl::Status fitted = RefreshPersonalHead(g); !fitted.ok()) {
    spdlog::warn("{}: no personal head for model v{}: {}", config.device_id, ref.version(), fitted.ToString());
  }
  return absl::OkStatus();
}

absl::Status LoadInstalledModel(GatewayState& g, const std::vector<models::TrustedRoot>& history) {
  // The installed model is verified again: the disk is not trusted either.
  // Expiry is not: a model accepted while fresh keeps serving.
  const auto installed_file = g.config.data_dir / "model.signed";
  auto blob = g.env.ReadFile(installed_file, 1 << 30);
  if (blob.ok()) {
    v1::SignedBundle signed_bundle;
    absl::StatusOr<models::VerifiedModel> verified = absl::DataLossError("not a signed bundle");
    // A model installed before a rotation was signed under an older root:
    // it keeps serving (and says so) until a model under the current root
    // arrives, so a rotation never strands a gateway without a model.
    auto under = history.rbegin();
    if (signed_bundle.ParseFromString(*blob)) {
      verified = under->VerifyModel(signed_bundle, nullptr, std::nullopt);
      for (auto older = under + 1; !verified.ok() && older != history.rend(); ++older) {
        auto v = older->VerifyModel(signed_bundle, nullptr, std::nullopt);
        if (v.ok()) verified = std::move(v), under = older;
      }
    }
    auto interpreter = verified.ok() ? models::Interpreter::Create(verified->bundle)
                                     : absl::StatusOr<std::unique_ptr<models::Interpreter>>(verified.status());
    if (!interpreter.ok()) {
      // Damaged on disk: set aside, and fetched again at the next check-in.
      // Meanwhile the gateway serves nothing rather than something unverified.
      if (auto s = g.SetAsideDamagedModel(installed_file, interpreter.status()); !s.ok()) return s;
    } else {
      g.Install(std::move(*verified), std::move(*interpreter));
      if (under != history.rbegin()) {
        g.model_status =
            StrCat("model v", g.version, " was signed under root v", under->root().version(), ", not the current v",
                   history.back().root().version(), "; it serves until the next model");
      }
    }
  } else if (blob.status().code() != absl::StatusCode::kNotFound ||
             std::filesystem::exists(installed_file.string() + ".damaged")) {
    if (auto s = g.SetAsideDamagedModel(installed_file, blob.status()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace tinyfed::client::internal
