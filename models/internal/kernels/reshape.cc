// Reshape: the same bytes under a new shape, clamped by the fused
// activation. The reference loop vectorizes as it is; there is no AVX2 kernel.
#include "absl/strings/str_cat.h"
#include "models/internal/kernels/arithmetic.h"
#include "models/internal/kernels/ops.h"

namespace tinyfed::models::internal::kernels {
const OpAnalyzer kReshapeAnalyzer = {
    .shape =
        [](const OpSite& site, OpAnalysis* a) {
          const v1::Shape& in = site.in.shape();
          const v1::Shape& out = site.out.shape();
          if (Elements(out) != Elements(in)) {
            return absl::InvalidArgumentError(
                absl::StrCat(site.where, ": reshape from ", Elements(in), " to ", Elements(out), " elements"));
          }
          Geometry& g = a->geometry;
          g.out_h = static_cast<int>(out.height());
          g.out_w = static_cast<int>(out.width());
          g.out_c = static_cast<int>(out.channels());
          return absl::OkStatus();
        },
    .requantize = SameQuantization,
};

// Same quantization on both sides (checked in analysis), so a copy is exact;
// the fused activation still clamps.
void ReferenceReshape(const PreparedOp& op, uint8_t* arena) {
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  const size_t n = static_cast<size_t>(op.g.out_h) * op.g.out_w * op.g.out_c;
  for (size_t i = 0; i < n; ++i) {
    out[i] = static_cast<int8_t>(std::clamp<int32_t>(in[i], op.activation.min, op.activation.max));
  }
}

}  // namespace tinyfed::models::internal::kernels
