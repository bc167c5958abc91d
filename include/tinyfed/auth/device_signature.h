// How a gateway proves who it is (service.proto, "Device authentication"):
// the enrollment proof and each request's signature over its serialized
// bytes. The client's gRPC transport signs with these; aggregator tests play
// a device with them, without linking the client.
#ifndef TINYFED_AUTH_DEVICE_SIGNATURE_H_
#define TINYFED_AUTH_DEVICE_SIGNATURE_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::auth {

// `device_id` asks to enroll with `token`, binding `device_key`'s public
// half to it by a signature over both.
v1::EnrollRequest SignedEnrollRequest(const std::string& device_id, const std::string& token,
                                      const models::SigningKey& device_key);
// Signs the SecAgg+ keys `keys` that device `device_id` advertises as
// SecAgg+ id `secagg_id` in round `round_id`.
void SignAdvertisedKeys(uint64_t round_id, uint32_t secagg_id, const std::string& device_id,
                        const models::SigningKey& device_key, v1::AdvertiseKeys* keys);
// OK if each neighbour's keys in `message` (the server's ShareKeys) are
// signed by the device named beside them for round `round_id`; otherwise
// PERMISSION_DENIED naming the neighbour. Agree on nothing before it.
absl::Status CheckNeighborSignatures(uint64_t round_id, const v1::SecAggServerMessage& message);
// A fresh nonce and `now` in `header`, which makes the request's signature
// single-use.
void StampHeader(v1::RequestHeader* header, absl::Time now);
// The device's signature over a request's serialized bytes for `method`
// ("/tinyfed.v1.Aggregator/CheckIn"), for the tinyfed-signature-bin metadata.
std::string SignRequest(std::string_view method, std::string_view request_bytes, const models::SigningKey& device_key);

}  // namespace tinyfed::auth

#endif  // TINYFED_AUTH_DEVICE_SIGNATURE_H_
