#include "models/internal/float_network.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tinyfed/models/quantization.h"
#include <Eigen/Core>

namespace tinyfed::models::internal {
namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatMap = Eigen::Map<RowMatrix>;
using ConstMatMap = Eigen::Map<const RowMatrix>;
using VecMap = Eigen::Map<Eigen::VectorXf>;
using ConstVecMap = Eigen::Map<const Eigen::VectorXf>;

const v1::Weights* WeightsOf(const v1::Op& op) {
  switch (op.kind_case()) {
    case v1::Op::kConv2D:
      return &op.conv2d().weights();
    case v1::Op::kDepthwiseConv2D:
      return &op.depthwise_conv2d().weights();
    case v1::Op::kFullyConnected:
      return &op.fully_connected().weights();
    default:
      return nullptr;
  }
}

v1::Weights* MutableWeightsOf(v1::Op* op) {
  switch (op->kind_case()) {
    case v1::Op::kConv2D:
      return op->mutable_conv2d()->mutable_weights();
    case v1::Op::kDepthwiseConv2D:
      return op->mutable_depthwise_conv2d()->mutable_weights();
    case v1::Op::kFullyConnected:
      return op->mutable_fully_connected()->mutable_weights();
    default:
      return nullptr;
  }
}

// Calls fn(out_pixel, tap, in_pixel) for every kernel tap of every output
// pixel that lands inside the input; padded taps contribute nothing, exactly
// as in the int8 kernels.
template <typename Fn>
void ForEachTap(const Geometry& g, Fn&& fn) {
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const size_t out_pixel = static_cast<size_t>(oy) * g.out_w + ox;
      for (int ky = 0; ky < g.kernel_h; ++ky) {
        const int iy = oy * g.stride_h - g.pad_top + ky;
        if (iy < 0 || iy >= g.in_h) continue;
        for (int kx = 0; kx < g.kernel_w; ++kx) {
          const int ix = ox * g.stride_w - g.pad_left + kx;
          if (ix < 0 || ix >= g.in_w) continue;
          fn(out_pixel, static_cast<size_t>(ky) * g.kernel_w + kx, static_cast<size_t>(iy) * g.in_w + ix);
        }
      }
    }
  }
}

size_t Elems(const Geometry& g, bool output) {
  return output ? static_cast<size_t>(g.out_h) * g.out_w * g.out_c : static_cast<size_t>(g.in_h) * g.in_w * g.in_c;
}

// Per-channel symmetric fake quantization of weights, as QuantizeSymmetricPerChannel.
void FakeQuantizeWeights(const std::vector<float>& w, int channels, std::vector<float>* out) {
  out->resize(w.size());
  std::vector<int8_t> q(w.size());
  std::vector<float> scales(static_cast<size_t>(channels));
  QuantizeSymmetricPerChannel(w, channels, q, scales);
  const size_t per = w.size() / static_cast<size_t>(channels);
  for (size_t i = 0; i < w.size(); ++i) (*out)[i] = q[i] * scales[i / per];
}

// Depthwise weights are HWC: channel is the fastest index, so per-channel
// quantization needs the transpose view.
void FakeQuantizeDepthwise(const std::vector<float>& w, int channels, std::vector<float>* out) {
  const size_t taps = w.size() / static_cast<size_t>(channels);
  std::vector<float> t(w.size());
  for (size_t k = 0; k < taps; ++k)
    for (size_t c = 0; c < static_cast<size_t>(channels); ++c) t[c * taps + k] = w[k * channels + c];
  std::vector<float> tq;
  FakeQuantizeWeights(t, channels, &tq);
  out->resize(w.size());
  for (size_t k = 0; k < taps; ++k)
    for (size_t c = 0; c < static_cast<size_t>(channels); ++c) (*out)[k * channels + c] = tq[c * taps + k];
}

// Inputs under each output pixel's window, padding excluded (never zero:
// graph analysis guarantees every window overlaps the input).
void PoolCounts(const Geometry& g, std::vector<float>* counts) {
  counts->assign(static_cast<size_t>(g.out_h) * g.out_w, 0.0f);
  ForEachTap(g, [&](size_t out_pixel, size_t, size_t) { (*counts)[out_pixel] += 1.0f; });
}

}  // namespace

absl::StatusOr<FloatNetwork> FloatNetwork::Create(const v1::ModelBundle& bundle) {
  auto analysis = AnalyzeBundle(bundle);
  if (!analysis.ok()) return analysis.status();
  if (bundle.precision() != v1::PRECISION_FLOAT32) {
    return absl::InvalidArgumentError("the float network needs a float32 bundle");
  }
  FloatNetwork net;
  net.analysis_ = std::move(*analysis);
  const v1::Graph& g = bundle.backbone();
  net.input_tensor_ = static_cast<int>(g.input());
  net.output_tensor_ = static_cast<int>(g.output());
  net.input_size_ = Elements(g.tensors(net.input_tensor_).shape());
  net.input_channels_ = static_cast<int>(g.tensors(net.input_tensor_).shape().channels());
  for (int c = 0; c < net.input_channels_; ++c) {
    const int i = bundle.input().mean_size() == 1 ? 0 : c;
    net.mean_.push_back(bundle.input().mean(i));
    net.inv_std_.push_back(1.0f / bundle.input().stddev(i));
  }
  net.quant_source_.resize(static_cast<size_t>(g.tensors_size()));
  for (int t = 0; t < g.tensors_size(); ++t) net.quant_source_[static_cast<size_t>(t)] = t;
  for (int i = 0; i < g.ops_size(); ++i) {
    const v1::Op& op = g.ops(i);
    net.activation_.push_back(op.activation());
    Params p;
    if (const v1::Weights* w = WeightsOf(op)) {
      p.w.assign(w->float_values().begin(), w->float_values().end());
      p.b.assign(w->float_bias().begin(), w->float_bias().end());
      p.dw.assign(p.w.size(), 0.0f);
      p.db.assign(p.b.size(), 0.0f);
      p.vw.assign(p.w.size(), 0.0f);
      p.vb.assign(p.b.size(), 0.0f);
    }
    net.params_.push_back(std::move(p));
    const auto kind = op.kind_case();
    if (kind == v1::Op::kMaxPool || kind == v1::Op::kAveragePool || kind == v1::Op::kGlobalAveragePool ||
        kind == v1::Op::kReshape) {
      net.quant_source_[op.output()] = net.quant_source_[op.inputs(0)];
    }
  }
  const v1::Head& h = bundle.head();
  net.num_classes_ = static_cast<int>(h.num_classes());
  net.head_.w.assign(h.weights().begin(), h.weights().end());
  net.head_.b.assign(h.bias().begin(), h.bias().end());
  net.head_.dw.assign(net.head_.w.size(), 0.0f);
  net.head_.db.assign(net.head_.b.size(), 0.0f);
  net.head_.vw.assign(net.head_.w.size(), 0.0f);
  net.head_.vb.assign(net.head_.b.size(), 0.0f);
  net.acts_.resize(static_cast<size_t>(g.tensors_size()));
  net.grads_.resize(static_cast<size_t>(g.tensors_size()));
  net.pass_.resize(static_cast<size_t>(g.tensors_size()));
  net.patches_.resize(static_cast<size_t>(g.ops_size()));
  net.argmax_.resize(static_cast<size_t>(g.ops_size()));
  net.pool_counts_.resize(static_cast<size_t>(g.ops_size()));
  return net;
}

void FloatNetwork::EnableFakeQuantization(std::vector<Range> ranges) {
  fake_quant_ = true;
  ranges_ = std::move(ranges);
}

void FloatNetwork::FakeQuantize(int tensor) {
  const int src = quant_source_[static_cast<size_t>(tensor)];
  Range& r = ranges_[static_cast<size_t>(src)];
  auto& a = acts_[static_cast<size_t>(tensor)];
  auto& pass = pass_[static_cast<size_t>(tensor)];
  pass.resize(a.size());
  if (src == tensor) {
    // Track the range by moving average of batch extremes (Jacob et al. 2018).
    const auto [lo, hi] = std::minmax_element(a.begin(), a.end());
    constexpr float kDecay = 0.99f;
    r.min = kDecay * r.min + (1 - kDecay) * *lo;
    r.max = kDecay * r.max + (1 - kDecay) * *hi;
  }
  const AffineQuantization q = ChooseAffineQuantization(r.min, r.max);
  const float lo = q.scale * static_cast<float>(-128 - q.zero_point);
  const float hi = q.scale * static_cast<float>(127 - q.zero_point);
  for (size_t i = 0; i < a.size(); ++i) {
    pass[i] = a[i] >= lo && a[i] <= hi;
    a[i] = DequantizeValue(QuantizeValue(a[i], q), q);
  }
}

void FloatNetwork::Forward(std::span<const float> raw, int batch) {
  batch_ = batch;
  auto& in = acts_[static_cast<size_t>(input_tensor_)];
  in.resize(input_size_ * static_cast<size_t>(batch));
  for (size_t i = 0; i < in.size(); ++i) {
    const size_t c = i % static_cast<size_t>(input_channels_);
    in[i] = (raw[i] - mean_[c]) * inv_std_[c];
  }
  if (fake_quant_) {
    FakeQuantize(input_tensor_);
    for (size_t i = 0; i < params_.size(); ++i) {
      const auto kind = analysis_.ops[i].kind;
      if (params_[i].w.empty()) continue;
      const int channels = static_cast<int>(params_[i].b.size());
      if (kind == v1::Op::kDepthwiseConv2D) {
        FakeQuantizeDepthwise(params_[i].w, channels, &params_[i].w_used);
      } else {
        FakeQuantizeWeights(params_[i].w, channels, &params_[i].w_used);
      }
    }
  }
  for (size_t i = 0; i < analysis_.ops.size(); ++i) {
    ForwardOp(i);
    Activate(i);
    if (fake_quant_) FakeQuantize(analysis_.ops[i].output);
  }
  const auto& emb = acts_[static_cast<size_t>(output_tensor_)];
  const auto dim = static_cast<Eigen::Index>(emb.size() / static_cast<size_t>(batch));
  logits_.resize(static_cast<size_t>(batch) * static_cast<size_t>(num_classes_));
  MatMap L(logits_.data(), batch, num_classes_);
  L.noalias() = ConstMatMap(emb.data(), batch, dim) * ConstMatMap(head_.w.data(), num_classes_, dim).transpose();
  L.rowwise() += ConstVecMap(head_.b.data(), num_classes_).transpose();
}

void FloatNetwork::ForwardOp(size_t i) {
  const OpAnalysis& a = analysis_.ops[i];
  const Geometry& g = a.geometry;
  const auto B = static_cast<size_t>(batch_);
  const auto& in = acts_[static_cast<size_t>(a.input)];
  auto& out = acts_[static_cast<size_t>(a.output)];
  out.assign(B * Elems(g, true), 0.0f);
  const Params& p = params_[i];
  switch (a.kind) {
    case v1::Op::kConv2D: {
      const size_t K = static_cast<size_t>(g.kernel_h) * g.kernel_w * g.in_c;
      const size_t pixels = static_cast<size_t>(g.out_h) * g.out_w;
      auto& P = patches_[i];
      P.assign(B * pixels * K, 0.0f);  // padding contributes zero
      const auto C = static_cast<size_t>(g.in_c);
      for (size_t b = 0; b < B; ++b) {
        const float* src = in.data() + b * Elems(g, false);
        float* rows = P.data() + b * pixels * K;
        ForEachTap(g, [&](size_t out_pixel, size_t tap, size_t in_pixel) {
          std::copy_n(src + in_pixel * C, C, rows + out_pixel * K + tap * C);
        });
      }
      MatMap O(out.data(), static_cast<Eigen::Index>(B * pixels), g.out_c);
      O.noalias() = ConstMatMap(P.data(), static_cast<Eigen::Index>(B * pixels), static_cast<Eigen::Index>(K)) *
                    ConstMatMap(Weights(p).data(), g.out_c, static_cast<Eigen::Index>(K)).transpose();
      O.rowwise() += ConstVecMap(p.b.data(), g.out_c).transpose();
      break;
    }
    case v1::Op::kFullyConnected: {
      MatMap O(out.data(), static_cast<Eigen::Index>(B), g.out_c);
      O.noalias() = ConstMatMap(in.data(), static_cast<Eigen::Index>(B), g.in_c) *
                    ConstMatMap(Weights(p).data(), g.out_c, g.in_c).transpose();
      O.rowwise() += ConstVecMap(p.b.data(), g.out_c).transpose();
      break;
    }
    case v1::Op::kDepthwiseConv2D: {
      const auto& w = Weights(p);
      const auto C = static_cast<size_t>(g.in_c);
      for (size_t b = 0; b < B; ++b) {
        const float* src = in.data() + b * Elems(g, false);
        float* dst = out.data() + b * Elems(g, true);
        for (size_t k = 0; k < Elems(g, true); k += C) std::copy(p.b.begin(), p.b.end(), dst + k);
        ForEachTap(g, [&](size_t out_pixel, size_t tap, size_t in_pixel) {
          float* o = dst + out_pixel * C;
          const float* x = src + in_pixel * C;
          const float* wk = w.data() + tap * C;
          for (size_t c = 0; c < C; ++c) o[c] += x[c] * wk[c];
        });
      }
      break;
    }
    case v1::Op::kMaxPool:
    case v1::Op::kAveragePool:
    case v1::Op::kGlobalAveragePool: {
      const bool is_max = a.kind == v1::Op::kMaxPool;
      const auto C = static_cast<size_t>(g.in_c);
      const size_t per_in = Elems(g, false), per_out = Elems(g, true);
      auto& arg = argmax_[i];
      if (is_max) {
        std::fill(out.begin(), out.end(), -std::numeric_limits<float>::infinity());
        arg.assign(out.size(), 0);
      }
      PoolCounts(g, &pool_counts_[i]);
      for (size_t b = 0; b < B; ++b) {
        const float* src = in.data() + b * per_in;
        float* dst = out.data() + b * per_out;
        int32_t* best = is_max ? arg.data() + b * per_out : nullptr;
        ForEachTap(g, [&](size_t out_pixel, size_t, size_t in_pixel) {
          for (size_t c = 0; c < C; ++c) {
            const float v = src[in_pixel * C + c];
            float& o = dst[out_pixel * C + c];
            if (!is_max) {
              o += v;
            } else if (v > o) {
              o = v;
              best[out_pixel * C + c] = static_cast<int32_t>(in_pixel * C + c);
            }
          }
        });
        if (!is_max) {
          for (size_t k = 0; k < per_out; ++k) dst[k] /= pool_counts_[i][k / C];
        }
      }
      break;
    }
    case v1::Op::kAdd: {
      const auto& other = acts_[static_cast<size_t>(a.second_input)];
      for (size_t k = 0; k < out.size(); ++k) out[k] = in[k] + other[k];
      break;
    }
    case v1::Op::kReshape:
      out = in;
      break;
    case v1::Op::kConcat: {
      const size_t pixels = static_cast<size_t>(g.out_h) * g.out_w;
      const auto C = static_cast<size_t>(g.out_c);
      size_t first = 0;  // the channel this input starts at
      for (int t : a.inputs) {
        const auto& part = acts_[static_cast<size_t>(t)];
        const size_t c = part.size() / (B * pixels);
        for (size_t k = 0; k < B * pixels; ++k) std::copy_n(part.data() + k * c, c, out.data() + k * C + first);
        first += c;
      }
      break;
    }
    case v1::Op::KIND_NOT_SET:
      break;
  }
}

void FloatNetwork::Activate(size_t i) {
  auto& out = acts_[static_cast<size_t>(analysis_.ops[i].output)];
  switch (activation_[i]) {
    case v1::ACTIVATION_RELU:
      for (float& v : out) v = std::max(v, 0.0f);
      break;
    case v1::ACTIVATION_RELU6:
      for (float& v : out) v = std::clamp(v, 0.0f, 6.0f);
      break;
    default:
      break;
  }
}

float FloatNetwork::Backward(std::span<const int> labels) {
  const int B = batch_;
  grad_logits_.resize(logits_.size());
  float loss = 0.0f;
  for (int b = 0; b < B; ++b) {
    const float* l = logits_.data() + static_cast<size_t>(b) * num_classes_;
    float* gl = grad_logits_.data() + static_cast<size_t>(b) * num_classes_;
    const float m = *std::max_element(l, l + num_classes_);
    float total = 0.0f;
    for (int c = 0; c < num_classes_; ++c) total += std::exp(l[c] - m);
    const int y = labels[static_cast<size_t>(b)];
    loss += std::log(total) - (l[y] - m);
    for (int c = 0; c < num_classes_; ++c) {
      gl[c] = (std::exp(l[c] - m) / total - (c == y ? 1.0f : 0.0f)) / static_cast<float>(B);
    }
  }
  BackwardFrom(grad_logits_);
  return loss / static_cast<float>(B);
}

void FloatNetwork::BackwardFrom(std::span<const float> grad_logits) {
  const int B = batch_;
  const auto& emb = acts_[static_cast<size_t>(output_tensor_)];
  const auto dim = static_cast<Eigen::Index>(emb.size() / static_cast<size_t>(B));
  ConstMatMap G(grad_logits.data(), B, num_classes_);
  ConstMatMap E(emb.data(), B, dim);
  MatMap(head_.dw.data(), num_classes_, dim).noalias() += G.transpose() * E;
  VecMap(head_.db.data(), num_classes_) += G.colwise().sum().transpose();
  for (size_t t = 0; t < grads_.size(); ++t) grads_[t].assign(acts_[t].size(), 0.0f);
  MatMap(grads_[static_cast<size_t>(output_tensor_)].data(), B, dim).noalias() =
      G * ConstMatMap(head_.w.data(), num_classes_, dim);
  for (size_t i = analysis_.ops.size(); i-- > 0;) BackwardOp(i);
}

void FloatNetwork::BackwardOp(size_t i) {
  const OpAnalysis& a = analysis_.ops[i];
  const Geometry& g = a.geometry;
  const auto B = static_cast<size_t>(batch_);
  auto& gout = grads_[static_cast<size_t>(a.output)];
  const auto& out = acts_[static_cast<size_t>(a.output)];
  // Through fake quantization (straight-through where not clamped) and the activation.
  if (fake_quant_) {
    const auto& pass = pass_[static_cast<size_t>(a.output)];
    for (size_t k = 0; k < gout.size(); ++k)
      if (!pass[k]) gout[k] = 0.0f;
  }
  if (activation_[i] == v1::ACTIVATION_RELU) {
    for (size_t k = 0; k < gout.size(); ++k)
      if (out[k] <= 0.0f) gout[k] = 0.0f;
  } else if (activation_[i] == v1::ACTIVATION_RELU6) {
    for (size_t k = 0; k < gout.size(); ++k)
      if (out[k] <= 0.0f || out[k] >= 6.0f) gout[k] = 0.0f;
  }
  const auto& in = acts_[static_cast<size_t>(a.input)];
  auto& gin = grads_[static_cast<size_t>(a.input)];
  const bool need_gin = a.input != input_tensor_;
  Params& p = params_[i];
  switch (a.kind) {
    case v1::Op::kConv2D: {
      const size_t K = static_cast<size_t>(g.kernel_h) * g.kernel_w * g.in_c;
      const auto rows = static_cast<Eigen::Index>(B * g.out_h * g.out_w);
      ConstMatMap G(gout.data(), rows, g.out_c);
      ConstMatMap P(patches_[i].data(), rows, static_cast<Eigen::Index>(K));
      MatMap(p.dw.data(), g.out_c, static_cast<Eigen::Index>(K)).noalias() += G.transpose() * P;
      VecMap(p.db.data(), g.out_c) += G.colwise().sum().transpose();
      if (!need_gin) break;
      RowMatrix dP = G * ConstMatMap(Weights(p).data(), g.out_c, static_cast<Eigen::Index>(K));
      const auto C = static_cast<size_t>(g.in_c);
      const size_t pixels = static_cast<size_t>(g.out_h) * g.out_w;
      for (size_t b = 0; b < B; ++b) {
        float* dst = gin.data() + b * Elems(g, false);
        const float* patch_grads = dP.data() + b * pixels * K;
        ForEachTap(g, [&](size_t out_pixel, size_t tap, size_t in_pixel) {
          const float* s = patch_grads + out_pixel * K + tap * C;
          float* d = dst + in_pixel * C;
          for (size_t c = 0; c < C; ++c) d[c] += s[c];
        });
      }
      break;
    }
    case v1::Op::kFullyConnected: {
      ConstMatMap G(gout.data(), static_cast<Eigen::Index>(B), g.out_c);
      ConstMatMap X(in.data(), static_cast<Eigen::Index>(B), g.in_c);
      MatMap(p.dw.data(), g.out_c, g.in_c).noalias() += G.transpose() * X;
      VecMap(p.db.data(), g.out_c) += G.colwise().sum().transpose();
      if (need_gin) {
        MatMap(gin.data(), static_cast<Eigen::Index>(B), g.in_c).noalias() +=
            G * ConstMatMap(Weights(p).data(), g.out_c, g.in_c);
      }
      break;
    }
    case v1::Op::kDepthwiseConv2D: {
      const auto& w = Weights(p);
      const auto C = static_cast<size_t>(g.in_c);
      for (size_t b = 0; b < B; ++b) {
        const float* src = in.data() + b * Elems(g, false);
        float* dsrc = gin.data() + b * Elems(g, false);
        const float* go = gout.data() + b * Elems(g, true);
        for (size_t k = 0; k < Elems(g, true); ++k) p.db[k % C] += go[k];
        ForEachTap(g, [&](size_t out_pixel, size_t tap, size_t in_pixel) {
          const float* o = go + out_pixel * C;
          for (size_t c = 0; c < C; ++c) {
            p.dw[tap * C + c] += o[c] * src[in_pixel * C + c];
            if (need_gin) dsrc[in_pixel * C + c] += o[c] * w[tap * C + c];
          }
        });
      }
      break;
    }
    case v1::Op::kMaxPool: {
      if (!need_gin) break;
      const auto& arg = argmax_[i];
      const size_t per_in = Elems(g, false), per_out = Elems(g, true);
      for (size_t b = 0; b < B; ++b) {
        for (size_t k = 0; k < per_out; ++k) {
          gin[b * per_in + static_cast<size_t>(arg[b * per_out + k])] += gout[b * per_out + k];
        }
      }
      break;
    }
    case v1::Op::kAveragePool:
    case v1::Op::kGlobalAveragePool: {
      if (!need_gin) break;
      const auto C = static_cast<size_t>(g.in_c);
      const auto& counts = pool_counts_[i];
      for (size_t b = 0; b < B; ++b) {
        float* d = gin.data() + b * Elems(g, false);
        const float* go = gout.data() + b * Elems(g, true);
        ForEachTap(g, [&](size_t out_pixel, size_t, size_t in_pixel) {
          const float inv = 1.0f / counts[out_pixel];
          for (size_t c = 0; c < C; ++c) d[in_pixel * C + c] += go[out_pixel * C + c] * inv;
        });
      }
      break;
    }
    case v1::Op::kAdd: {
      auto& gother = grads_[static_cast<size_t>(a.second_input)];
      for (size_t k = 0; k < gout.size(); ++k) {
        if (need_gin) gin[k] += gout[k];
        gother[k] += gout[k];
      }
      break;
    }
    case v1::Op::kReshape:
      if (need_gin)
        for (size_t k = 0; k < gout.size(); ++k) gin[k] += gout[k];
      break;
    case v1::Op::kConcat: {
      const size_t pixels = static_cast<size_t>(g.out_h) * g.out_w;
      const auto C = static_cast<size_t>(g.out_c);
      size_t first = 0;
      for (int t : a.inputs) {
        auto& gpart = grads_[static_cast<size_t>(t)];
        const size_t c = acts_[static_cast<size_t>(t)].size() / (B * pixels);
        if (t != input_tensor_) {
          for (size_t k = 0; k < B * pixels; ++k) {
            for (size_t j = 0; j < c; ++j) gpart[k * c + j] += gout[k * C + first + j];
          }
        }
        first += c;
      }
      break;
    }
    case v1::Op::KIND_NOT_SET:
      break;
  }
}

void FloatNetwork::Step(float lr, float momentum, float weight_decay) {
  auto update = [&](std::vector<float>& w, std::vector<float>& dw, std::vector<float>& v, float decay) {
    for (size_t k = 0; k < w.size(); ++k) {
      v[k] = momentum * v[k] + dw[k] + decay * w[k];
      w[k] -= lr * v[k];
      dw[k] = 0.0f;
    }
  };
  for (Params& p : params_) {
    update(p.w, p.dw, p.vw, weight_decay);
    update(p.b, p.db, p.vb, 0.0f);
  }
  update(head_.w, head_.dw, head_.vw, weight_decay);
  update(head_.b, head_.db, head_.vb, 0.0f);
}

void FloatNetwork::WriteTo(v1::ModelBundle* bundle) const {
  v1::Graph* g = bundle->mutable_backbone();
  for (int i = 0; i < g->ops_size(); ++i) {
    v1::Weights* w = MutableWeightsOf(g->mutable_ops(i));
    if (w == nullptr) continue;
    const Params& p = params_[static_cast<size_t>(i)];
    w->mutable_float_values()->Assign(p.w.begin(), p.w.end());
    w->mutable_float_bias()->Assign(p.b.begin(), p.b.end());
  }
  bundle->mutable_head()->mutable_weights()->Assign(head_.w.begin(), head_.w.end());
  bundle->mutable_head()->mutable_bias()->Assign(head_.b.begin(), head_.b.end());
}

}  // namespace tinyfed::models::internal
