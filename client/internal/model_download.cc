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
#include "tinyfed/base/status_macros.h"
#include "tinyfed/models/head_release.h"

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

// One model's way onto the gateway: fetched whole, or only its head onto
// the installed backbone, then verified and installed.
class ModelDownload {
 public:
  // `trusted`: the gateway's trust store, which the caller holds (round_mu).
  ModelDownload(GatewayState& g, const models::TrustedRoot& trusted, const v1::ModelRef& ref, RoundTimings* t)
      : g_(g), trusted_(trusted), ref_(ref), t_(t) {}

  absl::Status Run() {
    std::string blob;
    if (HasBackbone()) {
      TINYFED_ASSIGN_OR_RETURN(std::string head, Fetch(/*head_only=*/true));
      absl::StatusOr<std::string> rebuilt = Rebuild(head);
      if (rebuilt.ok()) {
        blob = std::move(*rebuilt);
      } else {
        spdlog::warn("{}: {}; downloading the whole model", g_.config.device_id, rebuilt.status().ToString());
      }
    }
    if (blob.empty()) {
      TINYFED_ASSIGN_OR_RETURN(blob, Fetch(/*head_only=*/false));
    }
    return Install(blob);
  }

 private:
  // Whether the installed backbone is the one the model's head belongs to.
  bool HasBackbone() ABSL_LOCKS_EXCLUDED(g_.mu) {
    absl::MutexLock lock(&g_.mu);
    return ref_.head_download_size() > 0 && !ref_.backbone_sha256().empty() && g_.interpreter &&
           g_.release.backbone_sha256() == ref_.backbone_sha256();
  }

  absl::Status Refuse(absl::Status s) {
    std::error_code ec;
    std::filesystem::remove(partial_, ec);
    std::filesystem::remove(meta_, ec);
    absl::MutexLock lock(&g_.mu);
    g_.model_status = StrCat("model v", ref_.version(), " refused: ", s.message());
    spdlog::warn("{}: {}", g_.config.device_id, g_.model_status);
    return s;
  }

  // The gateway's own disk failed (full, read-only): the model is fine and
  // is tried again next round, resuming what was downloaded.
  absl::Status NotStored(absl::Status s) {
    absl::MutexLock lock(&g_.mu);
    g_.model_status = StrCat("model v", ref_.version(), " not installed: ", s.message());
    spdlog::warn("{}: {}", g_.config.device_id, g_.model_status);
    return s;
  }

  // The SignedBundle (or SignedHead) of the model, resuming a partial
  // download of the same bytes. A link failure returns its error and keeps
  // the partial download.
  absl::StatusOr<std::string> Fetch(bool head_only) {
    const uint64_t size = head_only ? ref_.head_download_size() : ref_.download_size();
    const std::string& sha256 = head_only ? ref_.head_download_sha256() : ref_.download_sha256();
    if (size == 0 || size > (uint64_t{1} << 30)) {
      return Refuse(absl::InvalidArgumentError(StrCat("announced size ", size, " is not plausible")));
    }
    const std::string expected_meta = StrCat(ref_.version(), " ", absl::BytesToHexString(sha256), "\n");
    auto current_meta = g_.env.ReadFile(meta_, 4096);
    std::error_code ec;
    if (!current_meta.ok() || *current_meta != expected_meta) {
      std::filesystem::remove(partial_, ec);
      if (auto s = g_.env.WriteFileAtomically(meta_, expected_meta); !s.ok()) return NotStored(s);
    }
    uint64_t have = std::filesystem::exists(partial_, ec) ? std::filesystem::file_size(partial_, ec) : 0;
    if (have > size) {
      std::filesystem::remove(partial_, ec);
      have = 0;
    }
    while (have < size) {
      v1::ModelChunkRequest request;
      *request.mutable_header() = g_.Header(0, v1::PHASE_MODEL_DOWNLOAD);
      request.set_version(ref_.version());
      request.set_offset(have);
      request.set_head_only(head_only);
      const absl::Time start = absl::Now();
      auto chunk = g_.transport->GetModelChunk(request);
      t_->transport += absl::Now() - start;
      if (!chunk.ok()) return chunk.status();  // a link problem: resume next time
      // Endless data: more bytes than announced, or a chunk for another model.
      if (chunk->version() != ref_.version() || chunk->offset() != have || chunk->total_size() != size ||
          chunk->download_sha256() != sha256 || chunk->data().empty() || chunk->data().size() > size - have) {
        return Refuse(absl::DataLossError("the server sent a chunk that does not match the announced model"));
      }
      if (auto s = AppendDurably(partial_, chunk->data()); !s.ok()) return NotStored(s);
      have += chunk->data().size();
    }
    auto blob = g_.env.ReadFile(partial_, size);
    if (!blob.ok()) return NotStored(blob.status());
    if (base::Sha256(*blob) != sha256) {
      return Refuse(absl::DataLossError("the download does not match its announced SHA-256"));
    }
    return blob;
  }

  // The serialized SignedBundle a SignedHead rebuilds on the installed
  // backbone; Install verifies it as it would a whole download.
  absl::StatusOr<std::string> Rebuild(const std::string& head_blob) {
    v1::SignedHead head;
    if (!head.ParseFromString(head_blob)) {
      return absl::InvalidArgumentError(StrCat("the head of model v", ref_.version(), " is not a SignedHead"));
    }
    absl::MutexLock lock(&g_.mu);
    TINYFED_ASSIGN_OR_RETURN(v1::SignedBundle rebuilt, models::RebuildSignedBundle(head, g_.bundle));
    return rebuilt.SerializeAsString();
  }

  absl::Status Install(const std::string& blob) {
    v1::SignedBundle signed_bundle;
    if (!signed_bundle.ParseFromString(blob)) return Refuse(absl::InvalidArgumentError("not a signed bundle"));
    v1::ReleaseMetadata installed;
    std::optional<std::pair<std::string, uint32_t>> installed_task;  // input shape, classes
    {
      absl::MutexLock lock(&g_.mu);
      installed = g_.release;
      if (g_.interpreter)
        installed_task.emplace(g_.bundle.input().shape().SerializeAsString(), g_.bundle.head().num_classes());
    }
    auto verified =
        trusted_.VerifyModel(signed_bundle, installed.model_version() == 0 ? nullptr : &installed, g_.env.Now());
    if (!verified.ok()) return Refuse(verified.status());
    if (verified->release.model_version() != ref_.version()) {
      return Refuse(absl::PermissionDeniedError(
          StrCat("signed as v", verified->release.model_version(), ", announced as v", ref_.version())));
    }
    // A model for another task (other inputs or classes) would turn every
    // stored sample into garbage for it.
    if (installed_task && *installed_task != std::pair(verified->bundle.input().shape().SerializeAsString(),
                                                       verified->bundle.head().num_classes())) {
      return Refuse(absl::FailedPreconditionError("it is a model for another task (inputs or classes differ)"));
    }
    auto runnable = models::Interpreter::Create(verified->bundle);
    if (!runnable.ok()) return Refuse(runnable.status());
    const auto& dir = g_.config.data_dir;
    if (auto s = g_.env.WriteFileAtomically(dir / "model.signed", blob); !s.ok()) return NotStored(s);
    std::error_code ec;
    std::filesystem::remove(partial_, ec);
    std::filesystem::remove(meta_, ec);
    std::filesystem::remove(dir / "model.signed.damaged", ec);
    {
      absl::MutexLock lock(&g_.mu);
      g_.Install(std::move(*verified), std::move(*runnable));
      spdlog::info("{}: installed model v{} (release {})", g_.config.device_id, g_.version, g_.release.version());
    }
    // The model is in; a personal head that cannot be fitted leaves the
    // global head serving.
    if (absl::Status fitted = RefreshPersonalHead(g_); !fitted.ok()) {
      spdlog::warn("{}: no personal head for model v{}: {}", g_.config.device_id, ref_.version(), fitted.ToString());
    }
    return absl::OkStatus();
  }

  GatewayState& g_;
  const models::TrustedRoot& trusted_;
  const v1::ModelRef& ref_;
  RoundTimings* t_;
  const std::filesystem::path partial_ = g_.config.data_dir / "download.partial";
  const std::filesystem::path meta_ = g_.config.data_dir / "download.meta";
};

}  // namespace

absl::Status UpdateModel(GatewayState& g, const v1::ModelRef& ref, RoundTimings* t) {
  return ModelDownload(g, *g.trusted, ref, t).Run();
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
