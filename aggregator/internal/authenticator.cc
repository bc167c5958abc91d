#include "aggregator/internal/authenticator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/proto/authentication.h"

namespace tinyfed::aggregator::internal {

using absl::StrCat;

absl::Status Authenticator::Authenticate(std::string_view method, std::string_view bytes,
                                         const v1::RequestHeader& header, std::optional<std::string_view> signature,
                                         absl::Time now) {
  if (!signature) return absl::UnauthenticatedError(StrCat("no ", proto::kSignatureMetadataKey, " (unsigned request)"));
  auto key = devices_->KeyOf(header.device_id());
  if (!key.ok()) return key.status();
  if (!models::VerifySignature(*key, proto::RequestSigningMessage(method, bytes), *signature)) {
    return absl::UnauthenticatedError(StrCat("the signature is not device ", header.device_id(), "'s"));
  }
  const absl::Time stamped = absl::FromUnixMillis(header.timestamp_ms());
  if (absl::AbsDuration(now - stamped) > security_.max_clock_skew) {
    return absl::UnauthenticatedError(
        StrCat("the request's timestamp is ", absl::FormatDuration(now - stamped),
               " off the aggregator's clock (allowed: ", absl::FormatDuration(security_.max_clock_skew), ")"));
  }
  if (header.nonce().size() != proto::kNonceBytes) {
    return absl::UnauthenticatedError(StrCat("the nonce must be ", proto::kNonceBytes, " bytes"));
  }
  absl::MutexLock lock(&mu_);
  DeviceState& d = devices_state_[header.device_id()];
  // Token bucket: requests_per_minute, refilled continuously.
  const int per_minute = requests_per_minute_.load();
  const double capacity = per_minute;
  d.tokens = d.tokens < 0 ? capacity
                          : std::min(capacity, d.tokens + capacity / 60.0 * absl::ToDoubleSeconds(now - d.refilled));
  d.refilled = now;
  if (d.tokens < 1.0) {
    return absl::ResourceExhaustedError(
        StrCat("device ", header.device_id(), " exceeds its ", per_minute, " requests per minute"));
  }
  // Nonces older than the skew window cannot come back: their timestamp
  // would be refused.
  while (!d.nonce_order.empty() && d.nonce_order.front().first < now - 2 * security_.max_clock_skew) {
    d.nonces.erase(d.nonce_order.front().second);
    d.nonce_order.pop_front();
  }
  if (!d.nonces.insert(header.nonce()).second) {
    return absl::UnauthenticatedError("the nonce was used before (a replayed request)");
  }
  d.nonce_order.emplace_back(now, header.nonce());
  d.tokens -= 1.0;
  return absl::OkStatus();
}

size_t Authenticator::nonces_held(const std::string& device) const {
  absl::MutexLock lock(&mu_);
  const auto it = devices_state_.find(device);
  return it == devices_state_.end() ? 0 : it->second.nonces.size();
}

}  // namespace tinyfed::aggregator::internal
