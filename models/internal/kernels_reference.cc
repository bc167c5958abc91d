// Portable reference kernels, one loop nest per op in the shape of TFLite's
// reference_integer_ops. They are the definition of correct output.
#include <algorithm>
#include <cstring>

#include "models/internal/kernels.h"

namespace tinyfed::models::internal {
namespace {

// Modular int32 arithmetic without undefined behaviour.
inline int32_t WrapAdd(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}
inline int32_t WrapMul(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(b));
}

inline int8_t Requantize(int32_t acc, const PreparedOp& op, int channel) {
  int32_t v = MultiplyByQuantizedMultiplier(
      acc, QuantizedMultiplier{op.multiplier[static_cast<size_t>(channel)], op.shift[static_cast<size_t>(channel)]});
  v = WrapAdd(v, op.output_zero_point);
  return static_cast<int8_t>(std::clamp(v, op.activation.min, op.activation.max));
}

void Conv2D(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const int in_y0 = oy * g.stride_h - g.pad_top;
      const int in_x0 = ox * g.stride_w - g.pad_left;
      for (int oc = 0; oc < g.out_c; ++oc) {
        int32_t acc = op.bias[static_cast<size_t>(oc)];
        for (int ky = 0; ky < g.kernel_h; ++ky) {
          const int iy = in_y0 + ky;
          if (iy < 0 || iy >= g.in_h) continue;
          for (int kx = 0; kx < g.kernel_w; ++kx) {
            const int ix = in_x0 + kx;
            if (ix < 0 || ix >= g.in_w) continue;
            const int8_t* x = in + (static_cast<size_t>(iy) * g.in_w + ix) * g.in_c;
            const int8_t* w =
                op.weights.data() + ((static_cast<size_t>(oc) * g.kernel_h + ky) * g.kernel_w + kx) * g.in_c;
            for (int ic = 0; ic < g.in_c; ++ic) {
              acc = WrapAdd(acc, WrapMul(x[ic] - op.input_zero_point, w[ic]));
            }
          }
        }
        out[(static_cast<size_t>(oy) * g.out_w + ox) * g.out_c + oc] = Requantize(acc, op, oc);
      }
    }
  }
}

void DepthwiseConv2D(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const int in_y0 = oy * g.stride_h - g.pad_top;
      const int in_x0 = ox * g.stride_w - g.pad_left;
      for (int c = 0; c < g.in_c; ++c) {
        int32_t acc = op.bias[static_cast<size_t>(c)];
        for (int ky = 0; ky < g.kernel_h; ++ky) {
          const int iy = in_y0 + ky;
          if (iy < 0 || iy >= g.in_h) continue;
          for (int kx = 0; kx < g.kernel_w; ++kx) {
            const int ix = in_x0 + kx;
            if (ix < 0 || ix >= g.in_w) continue;
            const int32_t x = in[(static_cast<size_t>(iy) * g.in_w + ix) * g.in_c + c];
            const int32_t w = op.weights[(static_cast<size_t>(ky) * g.kernel_w + kx) * g.in_c + c];
            acc = WrapAdd(acc, WrapMul(x - op.input_zero_point, w));
          }
        }
        out[(static_cast<size_t>(oy) * g.out_w + ox) * g.out_c + c] = Requantize(acc, op, c);
      }
    }
  }
}

void FullyConnected(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  for (int o = 0; o < g.out_c; ++o) {
    int32_t acc = op.bias[static_cast<size_t>(o)];
    const int8_t* w = op.weights.data() + static_cast<size_t>(o) * g.in_c;
    for (int i = 0; i < g.in_c; ++i) acc = WrapAdd(acc, WrapMul(in[i] - op.input_zero_point, w[i]));
    out[o] = Requantize(acc, op, o);
  }
}

// Max and average pooling skip padded positions, as TFLite does.
template <bool kMax>
void Pool(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const int y0 = oy * g.stride_h - g.pad_top;
      const int x0 = ox * g.stride_w - g.pad_left;
      const int ky_begin = std::max(0, -y0), ky_end = std::min(g.kernel_h, g.in_h - y0);
      const int kx_begin = std::max(0, -x0), kx_end = std::min(g.kernel_w, g.in_w - x0);
      for (int c = 0; c < g.in_c; ++c) {
        int32_t acc = kMax ? -128 : 0;
        int32_t count = 0;
        for (int ky = ky_begin; ky < ky_end; ++ky) {
          for (int kx = kx_begin; kx < kx_end; ++kx) {
            const int32_t x = in[(static_cast<size_t>(y0 + ky) * g.in_w + (x0 + kx)) * g.in_c + c];
            acc = kMax ? std::max(acc, x) : acc + x;
            ++count;
          }
        }
        if (!kMax) {
          count = std::max(count, 1);
          acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        }
        out[(static_cast<size_t>(oy) * g.out_w + ox) * g.out_c + c] =
            static_cast<int8_t>(std::clamp(acc, op.activation.min, op.activation.max));
      }
    }
  }
}

void Add(const PreparedOp& op, uint8_t* arena) {
  const auto* a = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  const auto* b = reinterpret_cast<const int8_t*>(arena + op.second_input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  const size_t n = static_cast<size_t>(op.g.out_h) * op.g.out_w * op.g.out_c;
  for (size_t i = 0; i < n; ++i) {
    const int32_t sa = (a[i] - op.input_zero_point) * (1 << kAddLeftShift);
    const int32_t sb = (b[i] - op.second_input_zero_point) * (1 << kAddLeftShift);
    const int32_t ra = MultiplyByQuantizedMultiplier(sa, op.input_multiplier);
    const int32_t rb = MultiplyByQuantizedMultiplier(sb, op.second_input_multiplier);
    int32_t v = MultiplyByQuantizedMultiplier(WrapAdd(ra, rb), op.output_multiplier);
    v = WrapAdd(v, op.output_zero_point);
    out[i] = static_cast<int8_t>(std::clamp(v, op.activation.min, op.activation.max));
  }
}

// Same quantization on both sides (checked in analysis), so a copy is exact;
// the fused activation still clamps.
void Reshape(const PreparedOp& op, uint8_t* arena) {
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  const size_t n = static_cast<size_t>(op.g.out_h) * op.g.out_w * op.g.out_c;
  for (size_t i = 0; i < n; ++i) {
    out[i] = static_cast<int8_t>(std::clamp<int32_t>(in[i], op.activation.min, op.activation.max));
  }
}

}  // namespace

PreparedOp PrepareOp(const v1::Graph& graph, const v1::Op& op, const OpAnalysis& a) {
  PreparedOp p;
  p.kind = a.kind;
  p.g = a.geometry;
  p.input_zero_point = graph.tensors(a.input).zero_point();
  p.output_zero_point = graph.tensors(a.output).zero_point();
  p.activation = a.activation;
  const v1::Weights* w = nullptr;
  if (a.kind == v1::Op::kConv2D) w = &op.conv2d().weights();
  if (a.kind == v1::Op::kDepthwiseConv2D) w = &op.depthwise_conv2d().weights();
  if (a.kind == v1::Op::kFullyConnected) w = &op.fully_connected().weights();
  if (w != nullptr) {
    p.weights.resize(w->int8_values().size());
    std::memcpy(p.weights.data(), w->int8_values().data(), p.weights.size());
    p.bias.assign(w->int32_bias().begin(), w->int32_bias().end());
    for (const auto& m : a.channel_multipliers) {
      p.multiplier.push_back(m.multiplier);
      p.shift.push_back(m.shift);
    }
  }
  if (a.kind == v1::Op::kAdd) {
    p.second_input_zero_point = graph.tensors(a.second_input).zero_point();
    p.input_multiplier = a.input_multiplier;
    p.second_input_multiplier = a.second_input_multiplier;
    p.output_multiplier = a.output_multiplier;
  }
  return p;
}

KernelFn ReferenceKernel(v1::Op::KindCase kind) {
  switch (kind) {
    case v1::Op::kConv2D:
      return &Conv2D;
    case v1::Op::kDepthwiseConv2D:
      return &DepthwiseConv2D;
    case v1::Op::kFullyConnected:
      return &FullyConnected;
    case v1::Op::kMaxPool:
      return &Pool<true>;
    case v1::Op::kAveragePool:
    case v1::Op::kGlobalAveragePool:
      return &Pool<false>;
    case v1::Op::kAdd:
      return &Add;
    case v1::Op::kReshape:
      return &Reshape;
    case v1::Op::KIND_NOT_SET:
      break;
  }
  return nullptr;
}

}  // namespace tinyfed::models::internal
