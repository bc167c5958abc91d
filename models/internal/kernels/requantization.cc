// The per-output constants the AVX2 and VNNI kernels requantize with.
#include <algorithm>

#include "models/internal/kernels/arithmetic.h"
#include "models/internal/kernels/ops.h"

namespace tinyfed::models::internal::kernels {

void PrepareRequantization(PreparedOp* op, const std::vector<int32_t>& bias) {
  const int channels = op->g.out_c;
  const int lanes = RoundUp(channels, kChannelBlock);
  // Lanes past the last channel keep zeros: a zero multiplier gives 0.
  op->requantization.assign(static_cast<size_t>(lanes) * kRequantizationRows, 0);
  for (int lane = 0; lane < lanes; ++lane) {
    const int c = lane / kChannelBlock * kChannelBlock + kLaneChannel[lane % kChannelBlock];
    if (c >= channels) continue;
    int32_t* group = op->requantization.data() + static_cast<size_t>(lane / 8) * 8 * kRequantizationRows;
    const int i = lane % 8;
    const int32_t shift = op->shift[static_cast<size_t>(c)];
    const int32_t right = std::max(-shift, 0);
    // models::RoundingDivideByPOT's mask, kept to 32 bits.
    const auto mask = static_cast<int32_t>((int64_t{1} << std::min(right, 62)) - 1);
    group[kBiasRow * 8 + i] = bias[static_cast<size_t>(c)];
    group[kMultiplierRow * 8 + i] = op->multiplier[static_cast<size_t>(c)];
    group[kLeftShiftRow * 8 + i] = std::max(shift, 0);
    group[kRightShiftRow * 8 + i] = right;
    group[kRoundingMaskRow * 8 + i] = mask;
    group[kRoundingHalfRow * 8 + i] = mask >> 1;
  }
  for (size_t g = 0; g < op->requantization.size(); g += 8 * kRequantizationRows) {
    const int32_t* multiplier = op->requantization.data() + g + kMultiplierRow * 8;
    int32_t* odd = op->requantization.data() + g + kOddMultiplierRow * 8;
    for (int i = 0; i < 8; i += 2) odd[i] = odd[i + 1] = multiplier[i + 1];
  }
}

}  // namespace tinyfed::models::internal::kernels
