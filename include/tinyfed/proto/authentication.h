// What a gateway's device key signs (service.proto has the scheme): the
// client and the aggregator build the signed bytes with these, so the two
// never disagree.
#ifndef TINYFED_PROTO_AUTHENTICATION_H_
#define TINYFED_PROTO_AUTHENTICATION_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace tinyfed::proto {

// The gRPC metadata key of a request's signature (binary, hence "-bin").
inline constexpr char kSignatureMetadataKey[] = "tinyfed-signature-bin";
inline constexpr size_t kNonceBytes = 16;

// A domain string, so that no signature passes for another kind, then a
// text field and the rest, each ended unambiguously.
inline std::string DomainMessage(std::string_view domain, std::string_view text, std::string_view rest) {
  std::string m(domain);
  m.push_back('\0');
  m.append(text);
  m.push_back('\0');
  m.append(rest);
  return m;
}

// `method` is the full name, "/tinyfed.v1.Aggregator/CheckIn".
inline std::string RequestSigningMessage(std::string_view method, std::string_view request_bytes) {
  return DomainMessage("tinyfed request v1", method, request_bytes);
}

inline std::string EnrollmentProofMessage(std::string_view device_id, std::string_view token) {
  return DomainMessage("tinyfed enroll v1", device_id, token);
}

// SecAgg+ keys as advertised by a device for one round: the server relays
// them with this signature, and a neighbour checks it against the sender's
// enrolled key before agreeing on anything.
inline std::string AdvertiseKeysSigningMessage(uint64_t round_id, uint32_t secagg_id, std::string_view device_id,
                                               std::string_view encryption_public_key,
                                               std::string_view masking_public_key) {
  std::string ids;
  for (int i = 0; i < 8; ++i) ids.push_back(static_cast<char>(round_id >> (8 * i)));
  for (int i = 0; i < 4; ++i) ids.push_back(static_cast<char>(secagg_id >> (8 * i)));
  std::string keys(encryption_public_key);
  keys.append(masking_public_key);
  return DomainMessage("tinyfed advertise keys v1", ids.append(device_id), keys);
}

}  // namespace tinyfed::proto

#endif  // TINYFED_PROTO_AUTHENTICATION_H_
