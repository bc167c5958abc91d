#include "tinyfed/auth/device_signature.h"

#include <sodium.h>

#include <utility>

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
