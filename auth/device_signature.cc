#include "tinyfed/auth/device_signature.h"

#include <sodium.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "tinyfed/proto/authentication.h"

namespace tinyfed::auth {

v1::EnrollRequest SignedEnrollRequest(const std::string& device_id, const std::string& token,
                                      const models::SigningKey& device_key) {
  v1::EnrollRequest r;
  r.set_device_id(device_id);
  r.set_token(token);
  r.set_device_public_key(models::KeyBytes(device_key.public_key()));
  r.set_proof(device_key.Sign(proto::EnrollmentProofMessage(device_id, token)));
  return r;
}

void SignAdvertisedKeys(uint64_t round_id, uint32_t secagg_id, const std::string& device_id,
                        const models::SigningKey& device_key, v1::AdvertiseKeys* keys) {
  keys->set_signature(device_key.Sign(proto::AdvertiseKeysSigningMessage(
      round_id, secagg_id, device_id, keys->encryption_public_key(), keys->masking_public_key())));
}

absl::Status CheckNeighborSignatures(uint64_t round_id, const v1::SecAggServerMessage& message) {
  for (const v1::NeighborKeys& nk : message.share_keys().neighbors()) {
    auto device_key = models::PublicKeyFromBytes(nk.device_public_key());
    if (!device_key.ok() || !models::VerifySignature(
                                *device_key,
                                proto::AdvertiseKeysSigningMessage(round_id, nk.id(), nk.device_id(),
                                                                   nk.encryption_public_key(), nk.masking_public_key()),
                                nk.signature())) {
      return absl::PermissionDeniedError(
          absl::StrCat("SecAgg+: neighbour ", nk.id(), "'s keys are not signed by device '", nk.device_id(), "'"));
    }
  }
  return absl::OkStatus();
}

void StampHeader(v1::RequestHeader* header, absl::Time now) {
  std::string nonce(proto::kNonceBytes, '\0');
  randombytes_buf(nonce.data(), nonce.size());
  header->set_nonce(std::move(nonce));
  header->set_timestamp_ms(absl::ToUnixMillis(now));
}

std::string SignRequest(std::string_view method, std::string_view request_bytes, const models::SigningKey& device_key) {
  return device_key.Sign(proto::RequestSigningMessage(method, request_bytes));
}

}  // namespace tinyfed::auth
