// A release that changes only the head travels without the backbone: the
// publisher derives a SignedHead from the SignedBundle it signed, and a
// gateway that has the release's backbone rebuilds the SignedBundle from it
// (proto/tinyfed/v1/trust.proto, SignedHead). No new signature: the rebuilt
// bundle file must hash to what the release signs, and TrustedRoot::
// VerifyModel checks it as it checks a full download. A clinic-sized head
// is a few kilobytes; the backbone it leaves out is most of a model.
#ifndef TINYFED_MODELS_HEAD_RELEASE_H_
#define TINYFED_MODELS_HEAD_RELEASE_H_

#include <string>

#include "absl/status/statusor.h"
#include "tinyfed/v1/bundle.pb.h"
#include "tinyfed/v1/trust.pb.h"

namespace tinyfed::models {

// The SignedHead of `signed_bundle`; INVALID_ARGUMENT if its bundle file
// does not decode.
absl::StatusOr<v1::SignedHead> SignedHeadOf(const v1::SignedBundle& signed_bundle);

// `head` with `installed`'s backbone, input spec and label names put back.
// INVALID_ARGUMENT if the head part does not parse or carries a backbone;
// FAILED_PRECONDITION if the rebuilt file is not the one the release signs
// (the installed backbone is another). Signatures are not checked here.
absl::StatusOr<v1::SignedBundle> RebuildSignedBundle(const v1::SignedHead& head, const v1::ModelBundle& installed);

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_HEAD_RELEASE_H_
