// How a gateway proves who it is (service.proto, "Device authentication"):
// the enrollment proof and each request's signature over its serialized
// bytes. The client's gRPC transport signs with these; aggregator tests play
// a device with them, without linking the client.
#ifndef TINYFED_AUTH_DEVICE_SIGNATURE_H_
#define TINYFED_AUTH_DEVICE_SIGNATURE_H_

#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::auth {

// `device_id` asks to enroll with `token`, binding `device_key`'s public
// half to it by a signature over both.
v1::EnrollRequest SignedEnrollRequest(const std::string& device_id, const std::string& token,
                                      const models::SigningKey& device_key);
// A fresh nonce and `now` in `header`, which makes the request's signature
// single-use.
void StampHeader(v1::RequestHeader* header, absl::Time now);
// The device's signature over a request's serialized bytes for `method`
// ("/tinyfed.v1.Aggregator/CheckIn"), for the tinyfed-signature-bin metadata.
std::string SignRequest(std::string_view method, std::string_view request_bytes, const models::SigningKey& device_key);

}  // namespace tinyfed::auth

#endif  // TINYFED_AUTH_DEVICE_SIGNATURE_H_
