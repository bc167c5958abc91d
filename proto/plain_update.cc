#include "tinyfed/proto/plain_update.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <optional>

#include "absl/strings/str_cat.h"

namespace tinyfed::proto {
namespace {

std::optional<std::vector<float>> Floats(const std::string& bytes, size_t count) {
  if (bytes.size() != count * sizeof(float)) return std::nullopt;
  std::vector<float> v(count);
  std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}

}  // namespace

EncodedUpdate EncodePlainUpdate(uint64_t round_id, std::span<const float> values, v1::Compression compression,
                                double topk_fraction, const std::function<double()>& uniform) {
  EncodedUpdate e;
  v1::PlainUpdate& u = e.update;
  u.set_round_id(round_id);
  u.set_dimension(static_cast<uint32_t>(values.size()));
  e.sent.assign(values.size(), 0.0f);
  if (compression == v1::COMPRESSION_INT8) {
    float max = 0.0f;
    for (float v : values) max = std::max(max, std::abs(v));
    const float scale = max > 0 ? max / 127.0f : 0.0f;
    std::string q(values.size(), '\0');
    for (size_t i = 0; i < values.size(); ++i) {
      const double x = scale > 0 ? values[i] / scale : 0.0;
      const double floor = std::floor(x);
      const double up = uniform() < x - floor ? 1.0 : 0.0;
      const int v = static_cast<int>(std::clamp(floor + up, -127.0, 127.0));
      q[i] = static_cast<char>(static_cast<int8_t>(v));
      e.sent[i] = scale * static_cast<float>(v);
    }
    u.mutable_int8()->set_scale(scale);
    u.mutable_int8()->set_values(std::move(q));
  } else if (compression == v1::COMPRESSION_TOPK) {
    const size_t k =
        std::clamp<size_t>(static_cast<size_t>(std::ceil(topk_fraction * values.size())), 1, values.size());
    std::vector<uint32_t> order(values.size());
    std::iota(order.begin(), order.end(), 0u);
    std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k - 1), order.end(),
                     [&](uint32_t a, uint32_t b) { return std::abs(values[a]) > std::abs(values[b]); });
    order.resize(k);
    std::sort(order.begin(), order.end());
    std::string bytes;
    for (uint32_t i : order) {
      u.mutable_sparse()->add_indices(i);
      bytes.append(reinterpret_cast<const char*>(&values[i]), sizeof(float));
      e.sent[i] = values[i];
    }
    u.mutable_sparse()->set_values(std::move(bytes));
  } else {
    u.mutable_dense()->set_values(
        std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
    e.sent.assign(values.begin(), values.end());
  }
  return e;
}

absl::StatusOr<std::vector<float>> DecodePlainUpdate(const v1::PlainUpdate& u, size_t dimension) {
  using absl::InvalidArgumentError;
  using absl::StrCat;
  if (u.dimension() != dimension) {
    return InvalidArgumentError(StrCat("update.dimension ", u.dimension(), " is not the head's ", dimension));
  }
  std::vector<float> values(dimension, 0.0f);
  switch (u.values_case()) {
    case v1::PlainUpdate::kDense: {
      auto v = Floats(u.dense().values(), dimension);
      if (!v) return InvalidArgumentError(StrCat("update.dense needs ", dimension, " float32 values"));
      values = std::move(*v);
      break;
    }
    case v1::PlainUpdate::kInt8: {
      const std::string& q = u.int8().values();
      if (q.size() != dimension || !std::isfinite(u.int8().scale()) || u.int8().scale() < 0) {
        return InvalidArgumentError(StrCat("update.int8 needs ", dimension, " values and a finite scale >= 0"));
      }
      for (size_t i = 0; i < q.size(); ++i) values[i] = u.int8().scale() * static_cast<int8_t>(q[i]);
      break;
    }
    case v1::PlainUpdate::kSparse: {
      const auto& idx = u.sparse().indices();
      auto v = Floats(u.sparse().values(), static_cast<size_t>(idx.size()));
      if (!v) return InvalidArgumentError("update.sparse needs one float32 value per index");
      for (int i = 0; i < idx.size(); ++i) {
        if (idx[i] >= dimension || (i > 0 && idx[i] <= idx[i - 1])) {
          return InvalidArgumentError("update.sparse indices must increase and lie below the dimension");
        }
        values[idx[i]] = (*v)[static_cast<size_t>(i)];
      }
      break;
    }
    default:
      return InvalidArgumentError("update carries no values");
  }
  if (!std::all_of(values.begin(), values.end(), [](float x) { return std::isfinite(x); })) {
    return InvalidArgumentError("update has a value that is not finite");
  }
  return values;
}

}  // namespace tinyfed::proto
