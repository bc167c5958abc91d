// The codec of a plain update (a round without SecAgg+): dense float32,
// int8 with one scale and stochastic rounding, or top-k sparse. The gateway
// encodes with it and the aggregator decodes with it, so the two cannot
// drift apart.
#ifndef TINYFED_PROTO_PLAIN_UPDATE_H_
#define TINYFED_PROTO_PLAIN_UPDATE_H_

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::proto {

struct EncodedUpdate {
  v1::PlainUpdate update;
  std::vector<float> sent;  // what the aggregator decodes: the rest is the error to feed back
};

// `values` under `compression` (top-k keeps ceil(topk_fraction * n) values,
// at least one). `uniform` draws from [0, 1): int8 rounds up with the
// fraction's probability, which keeps the quantization unbiased.
EncodedUpdate EncodePlainUpdate(uint64_t round_id, std::span<const float> values, v1::Compression compression,
                                double topk_fraction, const std::function<double()>& uniform);

// The `dimension` values of `update`; INVALID_ARGUMENT naming the field for
// a wrong dimension, a short payload, unordered or out-of-range indices, a
// bad scale or a value that is not finite.
absl::StatusOr<std::vector<float>> DecodePlainUpdate(const v1::PlainUpdate& update, size_t dimension);

}  // namespace tinyfed::proto

#endif  // TINYFED_PROTO_PLAIN_UPDATE_H_
