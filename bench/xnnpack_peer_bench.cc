// The peer for models_bench: the same two backbones built from XNNPACK's own
// int8 operators (Debian's libxnnpack-dev), called directly, no interpreter:
// batch 1, one thread (no threadpool), random weights (the shapes are what
// is timed), ReLUs fused as XNNPACK fuses them.
//   BM_XnnpackCnn     NIID-Bench CNN on a 28x28x1 image: conv 5x5 (6),
//                     max pool, conv 5x5 (16), max pool, FC 120, FC 84
//   BM_XnnpackDsCnn   DS-CNN: 49x10x1, conv 10x4 stride 2 (64), 4 x
//                     (depthwise 3x3, pointwise 64), global average pool
// This XNNPACK (2022-02) has no int8 fully-connected operator: the FC layers
// are 1x1 convolutions over a 1x1 image, the same arithmetic.
// bench/run_models_bench.sh runs it beside models_bench and prints the ratios.
#include <benchmark/benchmark.h>
#include <xnnpack.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

namespace {

void Check(xnn_status status, const char* what) {
  if (status == xnn_status_success) return;
  std::fprintf(stderr, "XNNPACK: %s failed with status %d\n", what, static_cast<int>(status));
  std::abort();
}

// One quantization for every tensor: scales whose products XNNPACK accepts.
constexpr float kActivationScale = 0.05f, kKernelScale = 0.01f;
constexpr int8_t kZeroPoint = -128;  // post-ReLU activations: [0, 12.75]

class Network {
 public:
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;
  Network(size_t input_size) : rng_(7) { tensors_.emplace_back(input_size, 1); }
  ~Network() {
    for (xnn_operator_t op : ops_) xnn_delete_operator(op);
  }

  // KxK (kh x kw) convolution with fused ReLU on an h x w x `in` tensor.
  // groups > 1: depthwise (in == out == groups).
  Network& Conv(size_t h, size_t w, size_t in, size_t out, uint32_t kh, uint32_t kw, uint32_t stride, uint32_t pad_h,
                uint32_t pad_w, uint32_t groups = 1) {
    const size_t oh = (h + 2 * pad_h - kh) / stride + 1, ow = (w + 2 * pad_w - kw) / stride + 1;
    const size_t group_in = in / groups, group_out = out / groups;
    weights_.emplace_back(kh * kw * group_in * out);
    std::uniform_int_distribution<int> value(-127, 127);
    for (int8_t& v : weights_.back()) v = static_cast<int8_t>(value(rng_));
    biases_.emplace_back(out, 0);
    xnn_operator_t op = nullptr;
    Check(xnn_create_convolution2d_nhwc_qs8(pad_h, pad_w, pad_h, pad_w, kh, kw, stride, stride, 1, 1, groups, group_in,
                                            group_out, in, out, kZeroPoint, kActivationScale, kKernelScale,
                                            weights_.back().data(), biases_.back().data(), kZeroPoint, kActivationScale,
                                            kZeroPoint, 127, 0, &op),
          "create convolution");
    macs_ += static_cast<double>(oh * ow * kh * kw * group_in * out);
    Add(op, oh * ow * out);
    Check(xnn_setup_convolution2d_nhwc_qs8(op, 1, h, w, Input(), Output(), nullptr), "setup convolution");
    return *this;
  }

  Network& MaxPool2(size_t h, size_t w, size_t channels) {
    xnn_operator_t op = nullptr;
    Check(
        xnn_create_max_pooling2d_nhwc_s8(0, 0, 0, 0, 2, 2, 2, 2, 1, 1, channels, channels, channels, -128, 127, 0, &op),
        "create max pooling");
    Add(op, (h / 2) * (w / 2) * channels);
    Check(xnn_setup_max_pooling2d_nhwc_s8(op, 1, h, w, Input(), Output(), nullptr), "setup max pooling");
    return *this;
  }

  Network& GlobalAveragePool(size_t pixels, size_t channels) {
    xnn_operator_t op = nullptr;
    Check(xnn_create_global_average_pooling_nwc_qs8(channels, channels, channels, kZeroPoint, kActivationScale,
                                                    kZeroPoint, kActivationScale, -128, 127, 0, &op),
          "create global average pooling");
    Add(op, channels);
    Check(xnn_setup_global_average_pooling_nwc_qs8(op, 1, pixels, Input(), Output(), nullptr),
          "setup global average pooling");
    return *this;
  }

  void Run() {
    for (xnn_operator_t op : ops_) Check(xnn_run_operator(op, nullptr), "run");
  }
  double macs() const { return macs_; }

 private:
  void Add(xnn_operator_t op, size_t output_size) {
    ops_.push_back(op);
    tensors_.emplace_back(output_size, 0);
  }
  // After Add: the previous tensor feeds the new one.
  const int8_t* Input() const { return tensors_[tensors_.size() - 2].data(); }
  int8_t* Output() { return tensors_.back().data(); }

  std::mt19937 rng_;
  std::vector<xnn_operator_t> ops_;
  std::vector<std::vector<int8_t>> tensors_, weights_;
  std::vector<std::vector<int32_t>> biases_;
  double macs_ = 0;
};

void Initialize() {
  static const bool once = [] {
    Check(xnn_initialize(nullptr), "initialize");
    return true;
  }();
  (void)once;
}

void Time(benchmark::State& state, Network& net) {
  for (auto _ : state) {
    net.Run();
    benchmark::ClobberMemory();
  }
  state.counters["MACs"] = net.macs();
}

void BM_XnnpackCnn(benchmark::State& state) {
  Initialize();
  Network net(28 * 28);
  net.Conv(28, 28, 1, 6, 5, 5, 1, 0, 0)
      .MaxPool2(24, 24, 6)
      .Conv(12, 12, 6, 16, 5, 5, 1, 0, 0)
      .MaxPool2(8, 8, 16)
      .Conv(1, 1, 256, 120, 1, 1, 1, 0, 0)  // FC 256 -> 120 (the pooled 4x4x16, flattened)
      .Conv(1, 1, 120, 84, 1, 1, 1, 0, 0);  // FC 120 -> 84
  Time(state, net);
}

void BM_XnnpackDsCnn(benchmark::State& state) {
  Initialize();
  Network net(49 * 10);
  net.Conv(49, 10, 1, 64, 10, 4, 2, 5, 1);  // 25 x 5 x 64
  for (int block = 0; block < 4; ++block) {
    net.Conv(25, 5, 64, 64, 3, 3, 1, 1, 1, /*groups=*/64).Conv(25, 5, 64, 64, 1, 1, 1, 0, 0);
  }
  net.GlobalAveragePool(25 * 5, 64);
  Time(state, net);
}

BENCHMARK(BM_XnnpackCnn)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_XnnpackDsCnn)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
