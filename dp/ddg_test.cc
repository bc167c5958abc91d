#include "tinyfed/dp/ddg.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "tinyfed/dp/count_sketch.h"
#include "tinyfed/dp/rdp_accountant.h"
#include "tinyfed/dp/rotation.h"
#include "tinyfed/proto/packing.h"

namespace tinyfed::dp {
namespace {

Seed SeedOf(uint8_t tag) {
  Seed s{};
  s[0] = tag;
  s[31] = 0x5a;
  return s;
}

DdgConfig Config(size_t dimension, int bits, int clients, double noise_multiplier) {
  DdgConfig c;
  c.dimension = dimension;
  c.clip = 1.0;
  c.bits = bits;
  c.expected_clients = clients;
  c.noise_multiplier = noise_multiplier;
  return c;
}

std::vector<std::vector<float>> RandomUpdates(int n, size_t d, float spread, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, spread);
  std::vector<std::vector<float>> u(static_cast<size_t>(n), std::vector<float>(d));
  for (auto& v : u)
    for (float& x : v) x = g(rng);
  return u;
}

std::vector<double> Clipped(const std::vector<float>& v, double c) {
  double n2 = 0;
  for (float x : v) n2 += double{x} * x;
  const double f = n2 > c * c ? c / std::sqrt(n2) : 1.0;
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = v[i] * f;
  return out;
}

// Sum of encodings mod 2^b, as secure aggregation would produce it.
std::vector<uint32_t> ModularSum(const std::vector<std::vector<uint32_t>>& encodings, int bits) {
  std::vector<uint32_t> sum(encodings[0].size(), 0);
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  for (const auto& e : encodings)
    for (size_t i = 0; i < sum.size(); ++i) sum[i] = static_cast<uint32_t>((uint64_t{sum[i]} + e[i]) & mask);
  return sum;
}

TEST(Rotation, IsOrthonormalAndInvertibleAtAnyLength) {
  std::mt19937 rng(1);
  for (size_t d : {1u, 2u, 3u, 850u, 1000u, 1024u}) {
    std::vector<double> x(d);
    for (double& v : x) v = std::normal_distribution<double>()(rng);
    std::vector<double> y = x;
    RandomRotation(y, SeedOf(1));
    ASSERT_EQ(y.size(), d) << "no padding";
    double nx = 0, ny = 0;
    for (size_t i = 0; i < d; ++i) {
      nx += x[i] * x[i];
      ny += y[i] * y[i];
    }
    EXPECT_NEAR(nx, ny, 1e-12 * nx) << d;
    if (d > 1) {
      EXPECT_NE(y, x) << d;
    }
    InverseRandomRotation(y, SeedOf(1));
    for (size_t i = 0; i < d; ++i) EXPECT_NEAR(y[i], x[i], 1e-12) << d << " at " << i;
  }
}

// The bound the wrap-around analysis assumes: every coefficient of the
// rotation at most sqrt(kRotationFlatness / d), so a unit vector, even a
// spike, lands on no coordinate above it.
TEST(Rotation, SpreadsASpikeWithinTheFlatnessBound) {
  const size_t d = 850;
  const double bound = std::sqrt(kRotationFlatness / static_cast<double>(d));
  for (size_t at : {size_t{0}, size_t{1}, size_t{424}, d - 1}) {
    std::vector<double> x(d, 0.0);
    x[at] = 1.0;
    RandomRotation(x, SeedOf(2));
    double largest = 0;
    for (double v : x) largest = std::max(largest, std::abs(v));
    EXPECT_LE(largest, bound * (1 + 1e-12)) << at;
    EXPECT_GT(largest, 0.5 * bound) << at;
  }
}

TEST(Rotation, TheSignsFollowTheSeed) {
  std::vector<double> a(850, 1.0), b(850, 1.0), c(850, 1.0);
  RandomRotation(a, SeedOf(3));
  RandomRotation(b, SeedOf(3));
  RandomRotation(c, SeedOf(4));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(PackBits, RoundTripsEveryWidth) {
  std::mt19937 rng(2);
  for (int bits = 1; bits <= 32; ++bits) {
    std::vector<uint32_t> v(37);
    for (auto& x : v) x = static_cast<uint32_t>(rng() & ((uint64_t{1} << bits) - 1));
    const std::string packed = proto::PackBits(v, bits);
    EXPECT_EQ(packed.size(), (37 * static_cast<size_t>(bits) + 7) / 8);
    auto back = proto::UnpackBits(packed, bits, v.size());
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, v) << bits;
  }
  EXPECT_FALSE(proto::UnpackBits("abc", 16, 2).ok());
}

// Noise off: the decoded sum differs from the sum of the clipped vectors only
// by rounding, at most 1 per coordinate in scaled units before rotation, so
// the L2 error of the mean is below sqrt(m) / scale (and near sqrt(m/(4n)) /
// scale in expectation).
TEST(Ddg, RoundTripWithoutNoiseIsExactUpToRounding) {
  DdgConfig c = Config(1000, 16, 20, 1.0);
  auto p = ChooseDdgParams(c);
  ASSERT_TRUE(p.ok()) << p.status();
  const auto updates = RandomUpdates(20, c.dimension, 0.05f, 3);  // norms around 1.6: clipping engages
  auto rng = SecureRandom::FromSeed(SeedOf(9));
  std::vector<std::vector<uint32_t>> enc;
  std::vector<double> truth(c.dimension, 0.0);
  for (const auto& u : updates) {
    auto e = DdgEncode(*p, u, SeedOf(4), *rng, /*add_noise=*/false);
    ASSERT_TRUE(e.ok()) << e.status();
    enc.push_back(*e);
    const auto cl = Clipped(u, c.clip);
    for (size_t i = 0; i < truth.size(); ++i) truth[i] += cl[i];
  }
  auto sum = DdgDecodeSum(*p, ModularSum(enc, c.bits), SeedOf(4));
  ASSERT_TRUE(sum.ok());
  double err2 = 0;
  for (size_t i = 0; i < truth.size(); ++i) err2 += std::pow(((*sum)[i] - truth[i]) / 20.0, 2);
  const double d = static_cast<double>(c.dimension);
  EXPECT_LT(std::sqrt(err2), std::sqrt(d) / p->scale);
  EXPECT_LT(std::sqrt(err2), 3.0 * std::sqrt(d / (4.0 * 20)) / p->scale);
  EXPECT_GT(std::sqrt(err2), 0.0);
}

// With a sketch each client sends m values, and the decoded sum is the
// transposed sketch of the sum of the clients' (clipped) sketches, up to
// rounding.
TEST(Ddg, SketchedRoundTripDecodesTheSketchOfTheSum) {
  DdgConfig c = Config(850, 16, 20, 1.0);
  c.sketch_dimension = 170;
  EXPECT_EQ(EncodedDimension(c), 170u);
  auto p = ChooseDdgParams(c);
  ASSERT_TRUE(p.ok()) << p.status();
  auto sketch = CountSketch::Create(850, 170, SeedOf(4));
  ASSERT_TRUE(sketch.ok());
  const auto updates = RandomUpdates(20, c.dimension, 0.05f, 3);
  auto rng = SecureRandom::FromSeed(SeedOf(9));
  std::vector<std::vector<uint32_t>> enc;
  std::vector<double> sketched_sum(170, 0.0);
  for (const auto& u : updates) {
    auto e = DdgEncode(*p, u, SeedOf(4), *rng, /*add_noise=*/false);
    ASSERT_TRUE(e.ok()) << e.status();
    ASSERT_EQ(e->size(), 170u);
    enc.push_back(*e);
    auto y = sketch->Sketch(Clipped(u, c.clip));
    double n2 = 0;
    for (double v : y) n2 += v * v;
    for (size_t j = 0; j < y.size(); ++j) sketched_sum[j] += y[j] * (n2 > 1.0 ? 1.0 / std::sqrt(n2) : 1.0);
  }
  const auto truth = sketch->Unsketch(sketched_sum);
  auto sum = DdgDecodeSum(*p, ModularSum(enc, c.bits), SeedOf(4));
  ASSERT_TRUE(sum.ok()) << sum.status();
  ASSERT_EQ(sum->size(), 850u);
  double err2 = 0;
  for (size_t i = 0; i < truth.size(); ++i) err2 += std::pow((*sum)[i] - truth[i], 2);
  // Rounding error of 20 clients over 170 values, each value read by 5 coordinates.
  EXPECT_LT(std::sqrt(err2), 3.0 * std::sqrt(5.0 * 170.0 * 20.0 / 4.0) / p->scale);
  // The wrong length is refused, and so is a sketch longer than the update.
  EXPECT_FALSE(DdgDecodeSum(*p, std::vector<uint32_t>(850, 0), SeedOf(4)).ok());
  c.sketch_dimension = 851;
  EXPECT_EQ(ChooseDdgParams(c).status().code(), absl::StatusCode::kInvalidArgument);
}

// Noise on: the decoded sum minus the true sum has the configured variance,
// (z c)^2 in real units, plus the rounding's (at most n / 4 / scale^2).
TEST(Ddg, DecodedNoiseHasTheConfiguredVariance) {
  DdgConfig c = Config(4096, 20, 10, 0.05);
  auto p = ChooseDdgParams(c);
  ASSERT_TRUE(p.ok()) << p.status();
  const auto updates = RandomUpdates(10, c.dimension, 0.01f, 5);
  auto rng = SecureRandom::FromSeed(SeedOf(10));
  std::vector<std::vector<uint32_t>> enc;
  std::vector<double> truth(c.dimension, 0.0);
  for (const auto& u : updates) {
    enc.push_back(*DdgEncode(*p, u, SeedOf(6), *rng));
    const auto cl = Clipped(u, c.clip);
    for (size_t i = 0; i < truth.size(); ++i) truth[i] += cl[i];
  }
  auto sum = DdgDecodeSum(*p, ModularSum(enc, c.bits), SeedOf(6));
  ASSERT_TRUE(sum.ok());
  double mean = 0, sq = 0;
  for (size_t i = 0; i < truth.size(); ++i) {
    const double e = (*sum)[i] - truth[i];
    mean += e;
    sq += e * e;
  }
  mean /= static_cast<double>(truth.size());
  const double var = sq / static_cast<double>(truth.size()) - mean * mean;
  const double noise = 10 * p->local_variance.value() / (p->scale * p->scale);
  EXPECT_NEAR(noise, std::pow(0.05 * 1.0, 2), 1e-3 * noise);  // the rational is (z c)^2 to 1e-3
  const double rounding_max = 10 / 4.0 / (p->scale * p->scale);
  EXPECT_GT(var, noise * (1 - 0.06));
  EXPECT_LT(var, (noise + rounding_max) * (1 + 0.06));
  EXPECT_LT(rounding_max, 0.2 * noise) << "the test should measure the noise, not the rounding";
}

TEST(Ddg, AccountingMatchesTheGaussianWhenNoiseIsLarge) {
  // With large local noise tau vanishes and rounding matters little: the DDG
  // bound approaches the Gaussian mechanism's alpha / (2 z^2) per round.
  DdgConfig c = Config(1 << 12, 32, 100, 1.0);
  c.beta = 0.0;
  auto p = ChooseDdgParams(c);
  ASSERT_TRUE(p.ok()) << p.status();
  const std::vector<double> orders = {2.0, 8.0, 32.0};
  auto rdp = DdgRdp(*p, 100, 1, orders);
  ASSERT_TRUE(rdp.ok());
  const double inflation = std::pow(p->rounding_norm_bound / (c.clip * p->scale), 2);
  for (size_t i = 0; i < orders.size(); ++i) {
    EXPECT_NEAR((*rdp)[i], orders[i] / 2.0 * inflation, 1e-6 * orders[i]) << orders[i];
    EXPECT_GE((*rdp)[i], orders[i] / 2.0);  // never below the Gaussian's
  }
}

TEST(Ddg, TargetEpsilonIsMet) {
  DdgConfig c = Config(10000, 16, 20, 0.0);
  c.target_epsilon = 8.0;
  c.rounds = 50;
  auto p = ChooseDdgParams(c);
  ASSERT_TRUE(p.ok()) << p.status();
  const auto orders = DefaultOrders();
  const double eps = EpsilonFromRdp(orders, *DdgRdp(*p, 20, 50, orders), c.delta)->epsilon;
  EXPECT_LE(eps, 8.0);
  EXPECT_GT(eps, 7.5);
  EXPECT_LE(p->wrap_probability, c.max_wrap_probability * 1.0001);
}

TEST(Ddg, RefusesImpossibleSettings) {
  DdgConfig c = Config(100, 4, 1000, 1.0);
  const auto s = ChooseDdgParams(c).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("4 bits cannot hold"), absl::string_view::npos) << s;
  c.bits = 16;
  c.target_epsilon = 1.0;  // both set
  EXPECT_FALSE(ChooseDdgParams(c).ok());
  c.target_epsilon = 0.0;
  c.noise_multiplier = 0.0;  // neither
  EXPECT_FALSE(ChooseDdgParams(c).ok());
  c.noise_multiplier = 1.0;
  c.delta = 1.0;
  EXPECT_FALSE(ChooseDdgParams(c).ok());
}

// bits = 0: the fewest bits at which rounding inflates the sensitivity by
// at most kRoundingCost and adds at most that fraction to the noise's
// standard deviation; one bit fewer breaks one of the two.
TEST(Ddg, ChoosesTheFewestBitsWhoseRoundingIsCheap) {
  auto cheap = [](const DdgParams& p) {
    const double n = p.config.expected_clients;
    return p.rounding_norm_bound <= (1 + kRoundingCost) * p.config.clip * p.scale &&
           n / 4.0 <= kRoundingCost * kRoundingCost * n * p.local_variance.value();
  };
  for (double z : {0.3, 1.0, 4.5}) {
    DdgConfig c = Config(850, 0, 76, z);
    c.clip = 0.1;
    auto p = ChooseDdgParams(c);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_TRUE(cheap(*p)) << z;
    EXPECT_LT(p->config.bits, 20) << z;
    EXPECT_LE(p->wrap_probability, c.max_wrap_probability * 1.0001) << z;
    c.bits = p->config.bits - 1;
    auto fewer = ChooseDdgParams(c);
    EXPECT_TRUE(!fewer.ok() || !cheap(*fewer)) << z << " at " << c.bits << " bits";
  }
}

TEST(Ddg, ChosenBitsAndNoiseTogetherMeetATargetEpsilon) {
  DdgConfig c = Config(850, 0, 76, 0.0);
  c.clip = 0.1;
  c.target_epsilon = 8.0;
  c.rounds = 50;
  auto chosen = ChooseDdgParams(c);
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  const auto orders = DefaultOrders();
  EXPECT_LE(EpsilonFromRdp(orders, *DdgRdp(*chosen, 76, 50, orders), c.delta)->epsilon, 8.0);
  // Within kRoundingCost of the noise 32 bits would need.
  c.bits = 32;
  auto wide = ChooseDdgParams(c);
  ASSERT_TRUE(wide.ok()) << wide.status();
  EXPECT_LE(chosen->noise_multiplier, (1 + kRoundingCost) * wide->noise_multiplier);
  EXPECT_LT(chosen->config.bits, 16);
}

TEST(Ddg, SettingsRoundTripAndNameTheirRotation) {
  DdgConfig c = Config(850, 12, 20, 1.0);
  v1::DdgSettings s = DdgSettingsOf(c);
  EXPECT_EQ(s.rotation(), v1::ROTATION_RANDOMIZED_DCT);
  auto p = DdgParamsOf(s);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->config.bits, 12);
  EXPECT_EQ(p->config.dimension, 850u);
  EXPECT_EQ(p->config.sketch_dimension, 0u);
  c.sketch_dimension = 170;
  EXPECT_EQ(DdgParamsOf(DdgSettingsOf(c))->config.sketch_dimension, 170u);
  // An older aggregator's task (a padded Hadamard rotation) is refused by name.
  s.set_rotation(v1::ROTATION_UNSPECIFIED);
  EXPECT_EQ(DdgParamsOf(s).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(DdgParamsOf(s).status().message().find("ROTATION_UNSPECIFIED"), std::string::npos);
  // Settings that leave the bits to each reader.
  s.set_rotation(v1::ROTATION_RANDOMIZED_DCT);
  s.set_bits(0);
  EXPECT_EQ(DdgParamsOf(s).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Ddg, EncodeRejectsBadUpdates) {
  DdgConfig c = Config(8, 16, 2, 1.0);
  auto p = ChooseDdgParams(c);
  ASSERT_TRUE(p.ok());
  auto rng = SecureRandom::FromSeed(SeedOf(1));
  std::vector<float> v(7, 0.0f);
  EXPECT_EQ(DdgEncode(*p, v, SeedOf(1), *rng).status().code(), absl::StatusCode::kInvalidArgument);
  v.assign(8, 0.0f);
  v[3] = std::nanf("");
  EXPECT_EQ(DdgEncode(*p, v, SeedOf(1), *rng).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<uint32_t> big(8, 1u << 20);
  EXPECT_EQ(DdgDecodeSum(*p, big, SeedOf(1)).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Ddg, LocalOnlyNoiseIsTheFullNoise) {
  DdgConfig c = Config(64, 24, 10, 2.0);
  c.local_only = true;
  auto p = ChooseDdgParams(c);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_NEAR(p->local_variance.value() / (p->scale * p->scale), 4.0, 4e-3);
}

}  // namespace
}  // namespace tinyfed::dp

namespace tinyfed::dp {
namespace {

double Norm(const std::vector<double>& v, double divide) {
  double n2 = 0.0;
  for (double x : v) n2 += (x / divide) * (x / divide);
  return std::sqrt(n2);
}

// Honest rounds (noised, or noiseless for patient-level updates) decode to a
// mean under the bound; a client that skips clipping is caught.
TEST(Ddg, MeanNormBoundHoldsForHonestSumsAndCatchesAnUnclippedUpdate) {
  for (int variant = 0; variant < 3; ++variant) {
    const bool noiseless = variant == 1;
    DdgConfig c = Config(300, 20, 10, noiseless ? 0.0 : 2.0);
    c.noiseless = noiseless;
    if (variant == 2) c.sketch_dimension = 60;
    auto p = ChooseDdgParams(c);
    ASSERT_TRUE(p.ok()) << p.status();
    auto rng = SecureRandom::FromSeed(SeedOf(11));
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<std::vector<uint32_t>> enc;
      for (const auto& u : RandomUpdates(10, c.dimension, 1.0f, 100 + trial))
        enc.push_back(*DdgEncode(*p, u, SeedOf(5), *rng));
      auto sum = DdgDecodeSum(*p, ModularSum(enc, c.bits), SeedOf(5));
      ASSERT_TRUE(sum.ok());
      EXPECT_LE(Norm(*sum, 10), DdgMeanNormBound(*p, 10)) << noiseless << " " << trial;
    }
    // One client's integers scaled up tenfold past its clip.
    std::vector<std::vector<uint32_t>> enc;
    for (const auto& u : RandomUpdates(10, c.dimension, 1.0f, 7)) enc.push_back(*DdgEncode(*p, u, SeedOf(5), *rng));
    auto z = DdgQuantize(*p, RandomUpdates(1, c.dimension, 1.0f, 8)[0], SeedOf(5), *rng);
    ASSERT_TRUE(z.ok());
    for (int64_t& v : *z) v *= 30;
    enc[0] = ReduceModulo(*z, c.bits);
    auto sum = DdgDecodeSum(*p, ModularSum(enc, c.bits), SeedOf(5));
    ASSERT_TRUE(sum.ok());
    EXPECT_GT(Norm(*sum, 10), DdgMeanNormBound(*p, 10)) << noiseless;
  }
}

TEST(Ddg, NoiselessEncodingHasNoPrivacyToAccount) {
  DdgConfig c = Config(100, 16, 5, 0.0);
  c.noiseless = true;
  auto p = ChooseDdgParams(c);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(DdgRdp(*p, 5, 1, DefaultOrders()).status().code(), absl::StatusCode::kInvalidArgument);
  c.noise_multiplier = 1.0;
  EXPECT_EQ(ChooseDdgParams(c).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tinyfed::dp
