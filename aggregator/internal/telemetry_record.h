// What a gateway's telemetry (service.proto, Telemetry) may say, and the
// record the aggregator keeps of it: every field is checked against its
// bounds before anything of it is stored or watched, so a hostile report
// can neither fill the state nor outweigh the fleet's drift pool.
#ifndef TINYFED_AGGREGATOR_INTERNAL_TELEMETRY_RECORD_H_
#define TINYFED_AGGREGATOR_INTERNAL_TELEMETRY_RECORD_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::aggregator::internal {

// Cases a gateway may report answering between two reports.
inline constexpr uint64_t kMaxRecentCases = 100000;

// The JSON kept in the state's telemetry table (the status page reads it),
// or INVALID_ARGUMENT naming the field out of bounds.
absl::StatusOr<std::string> TelemetryRecord(const v1::Telemetry& t);

}  // namespace tinyfed::aggregator::internal

#endif  // TINYFED_AGGREGATOR_INTERNAL_TELEMETRY_RECORD_H_
