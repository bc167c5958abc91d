#include "tinyfed/models/head_release.h"

#include "absl/strings/str_cat.h"
#include "tinyfed/base/sha256.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/trust.h"

namespace tinyfed::models {

absl::StatusOr<v1::SignedHead> SignedHeadOf(const v1::SignedBundle& signed_bundle) {
  absl::StatusOr<v1::ModelBundle> bundle = DecodeBundleFile(signed_bundle.bundle());
  if (!bundle.ok()) return bundle.status();
  bundle->clear_backbone();
  bundle->clear_input();
  bundle->clear_label_names();
  v1::SignedHead head;
  head.set_bundle_without_backbone(bundle->SerializeAsString());
  *head.mutable_release() = signed_bundle.release();
  return head;
}

absl::StatusOr<v1::SignedBundle> RebuildSignedBundle(const v1::SignedHead& head, const v1::ModelBundle& installed) {
  if (head.bundle_without_backbone().size() > kMaxBundleFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a head part of ", head.bundle_without_backbone().size(), " bytes exceeds the bundle limit"));
  }
  v1::ModelBundle bundle;
  if (!bundle.ParseFromString(head.bundle_without_backbone())) {
    return absl::InvalidArgumentError("the head part is not a valid ModelBundle message");
  }
  if (bundle.has_backbone() || bundle.has_input() || bundle.label_names_size() > 0) {
    return absl::InvalidArgumentError("the head part carries a backbone, input spec or label names");
  }
  absl::StatusOr<v1::ReleaseMetadata> release = ParseRelease(head.release());
  if (!release.ok()) return release.status();
  *bundle.mutable_backbone() = installed.backbone();
  *bundle.mutable_input() = installed.input();
  *bundle.mutable_label_names() = installed.label_names();
  v1::SignedBundle rebuilt;
  rebuilt.set_bundle(EncodeBundleFile(bundle));
  if (rebuilt.bundle().size() != release->bundle_length() ||
      base::Sha256(rebuilt.bundle()) != release->bundle_sha256()) {
    return absl::FailedPreconditionError(absl::StrCat("the head of model v", release->model_version(),
                                                      " does not rebuild the signed bundle on this backbone"));
  }
  *rebuilt.mutable_release() = head.release();
  return rebuilt;
}

}  // namespace tinyfed::models
