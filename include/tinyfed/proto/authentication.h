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

// `method` is the full name, "/tinyfed.v1.Aggregator/CheckIn".
inline std::string RequestSigningMessage(std::string_view method, std::string_view request_bytes) {
  std::string m("tinyfed request v1");
  m.push_back('\0');
  m.append(method);
  m.push_back('\0');
  m.append(request_bytes);
  return m;
}

inline std::string EnrollmentProofMessage(std::string_view device_id, std::string_view token) {
  std::string m("tinyfed enroll v1");
  m.push_back('\0');
  m.append(device_id);
  m.push_back('\0');
  m.append(token);
  return m;
}

// SecAgg+ keys as advertised by a device for one round: the server relays
// them with this signature, and a neighbour checks it against the sender's
// enrolled key before agreeing on anything.
inline std::string AdvertiseKeysSigningMessage(uint64_t round_id, uint32_t secagg_id, std::string_view device_id,
                                               std::string_view encryption_public_key,
                                               std::string_view masking_public_key) {
  std::string m("tinyfed advertise keys v1");
  m.push_back('\0');
  for (int i = 0; i < 8; ++i) m.push_back(static_cast<char>(round_id >> (8 * i)));
  for (int i = 0; i < 4; ++i) m.push_back(static_cast<char>(secagg_id >> (8 * i)));
  m.append(device_id);
  m.push_back('\0');
  m.append(encryption_public_key);
  m.append(masking_public_key);
  return m;
}

}  // namespace tinyfed::proto

#endif  // TINYFED_PROTO_AUTHENTICATION_H_
