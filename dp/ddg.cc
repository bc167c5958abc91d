#include "tinyfed/dp/ddg.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "tinyfed/dp/count_sketch.h"
#include "tinyfed/dp/rdp_accountant.h"
#include "tinyfed/dp/rotation.h"

namespace tinyfed::dp {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

// Norm bound after conditional stochastic rounding of a vector of scaled L2
// norm `l2` in `d` dimensions (Kairouz et al. Prop. 22).
double RoundedL2Bound(double l2, double beta, size_t d) {
  const double dim = static_cast<double>(d);
  const double bound1 = l2 + std::sqrt(dim);
  if (beta == 0.0) return bound1;
  const double squared = l2 * l2 + 0.25 * dim + std::sqrt(2.0 * std::log(1.0 / beta)) * (l2 + 0.5 * std::sqrt(dim));
  return std::min(bound1, std::sqrt(squared));
}

absl::Status CheckConfig(const DdgConfig& c) {
  if (c.dimension == 0 || c.dimension > (size_t{1} << 28)) {
    return InvalidArgumentError(StrCat("dimension must be in [1, 2^28], got ", c.dimension));
  }
  if (c.sketch_dimension > c.dimension) {
    return InvalidArgumentError(
        StrCat("sketch dimension ", c.sketch_dimension, " is more than the update's ", c.dimension));
  }
  if (!(c.clip > 0.0) || !std::isfinite(c.clip))
    return InvalidArgumentError(StrCat("clip must be positive, got ", c.clip));
  if (c.bits != 0 && (c.bits < 2 || c.bits > 32)) {
    return InvalidArgumentError(StrCat("bits must be in [2, 32], or 0 to choose them, got ", c.bits));
  }
  if (c.expected_clients < 1) {
    return InvalidArgumentError(StrCat("expected clients must be at least 1, got ", c.expected_clients));
  }
  if (!(c.delta > 0.0 && c.delta < 1.0)) return InvalidArgumentError(StrCat("delta must be in (0, 1), got ", c.delta));
  if (c.noiseless) {
    if (c.noise_multiplier != 0.0 || c.target_epsilon != 0.0) {
      return InvalidArgumentError("a noiseless encoding takes neither a noise multiplier nor a target epsilon");
    }
  } else if ((c.noise_multiplier > 0.0) == (c.target_epsilon > 0.0)) {
    return InvalidArgumentError(StrCat("set exactly one of noise multiplier (", c.noise_multiplier,
                                       ") and target epsilon (", c.target_epsilon, ")"));
  }
  if (c.rounds < 1) return InvalidArgumentError(StrCat("rounds must be at least 1, got ", c.rounds));
  if (!(c.beta >= 0.0 && c.beta < 1.0)) return InvalidArgumentError(StrCat("beta must be in [0, 1), got ", c.beta));
  if (!(c.max_wrap_probability > 0.0 && c.max_wrap_probability < 1.0)) {
    return InvalidArgumentError(StrCat("max wrap probability must be in (0, 1), got ", c.max_wrap_probability));
  }
  return absl::OkStatus();
}

// Scale and noise for a given central noise multiplier z.
absl::StatusOr<DdgParams> ParamsForNoise(const DdgConfig& c, double z) {
  DdgParams p;
  p.config = c;
  p.noise_multiplier = z;
  const double n = c.expected_clients;
  const double d = static_cast<double>(EncodedDimension(c));
  // Stddev each client adds, in real units.
  const double local_stddev = c.local_only ? z * c.clip : z * c.clip / std::sqrt(n);
  // Per coordinate the sum is subgaussian with variance proxy
  //   V = scale^2 (F c^2 n^2 / d + n local^2) + n / 4
  // (F: the rotation's flatness; the last term: rounding),
  // and P(|sum| >= 2^(b-1)) <= 2 exp(-2^(2b-2) / (2V)) = p when 2^(b-1) = k sqrt(V).
  const double k = std::sqrt(2.0 * std::log(2.0 / c.max_wrap_probability));
  const double two_b = std::ldexp(1.0, c.bits);
  if (two_b * two_b <= n * k * k) {
    return InvalidArgumentError(StrCat(c.bits, " bits cannot hold the rounding noise of ", c.expected_clients,
                                       " clients within wrap probability ", c.max_wrap_probability));
  }
  const double signal = kRotationFlatness * c.clip * c.clip * n * n / d + n * local_stddev * local_stddev;
  p.scale = std::sqrt(two_b * two_b - n * k * k) / (2.0 * k * std::sqrt(signal));
  // Past a per-client variance of 2^30 (scaled) more resolution buys nothing
  // and the exact sampler's integer range ends; a smaller scale only lowers
  // the wrap probability.
  if (local_stddev > 0.0) p.scale = std::min(p.scale, std::ldexp(1.0, 15) / local_stddev);
  const double v = p.scale * p.scale * signal + n / 4.0;
  p.wrap_probability = std::min(1.0, 2.0 * std::exp(-std::ldexp(1.0, 2 * c.bits - 2) / (2.0 * v)));
  if (!c.noiseless) {
    const double scaled_variance = std::pow(local_stddev * p.scale, 2);
    auto rational = SigmaSquaredAsRational(scaled_variance);
    if (!rational.ok()) {
      return InvalidArgumentError(StrCat("per-client noise variance ", scaled_variance,
                                         " (scaled units) is out of range: ", rational.status().message()));
    }
    p.local_variance = *rational;
  }
  p.rounding_norm_bound = RoundedL2Bound(c.clip * p.scale, c.beta, EncodedDimension(c));
  if (c.clip * p.scale < 1.0) {
    return InvalidArgumentError(StrCat("scale ", p.scale, " leaves the clipped update (norm ", c.clip,
                                       ") below one integer step; use more bits or fewer clients"));
  }
  return p;
}

double DdgEpsilon(const DdgParams& p, int64_t rounds) {
  const auto orders = DefaultOrders();
  auto rdp = DdgRdp(p, p.config.expected_clients, rounds, orders);
  if (!rdp.ok()) return std::numeric_limits<double>::infinity();
  auto spent = EpsilonFromRdp(orders, *rdp, p.config.delta);
  return spent.ok() ? spent->epsilon : std::numeric_limits<double>::infinity();
}

// The noise for a config whose bits are set: as configured, or the least
// that meets the target epsilon.
absl::StatusOr<DdgParams> ParamsForBits(const DdgConfig& config) {
  if (config.noiseless) return ParamsForNoise(config, 0.0);
  if (config.noise_multiplier > 0.0) return ParamsForNoise(config, config.noise_multiplier);
  // Bisection on z: epsilon falls as z grows.
  double lo = 0.0, hi = 0.5;
  absl::StatusOr<DdgParams> best = InvalidArgumentError("no noise multiplier found");
  for (;;) {
    best = ParamsForNoise(config, hi);
    if (best.ok() && DdgEpsilon(*best, config.rounds) <= config.target_epsilon) break;
    lo = hi;
    hi *= 2.0;
    if (hi > 1e4) {
      return InvalidArgumentError(StrCat("no noise multiplier up to 1e4 reaches epsilon ", config.target_epsilon,
                                         " in ", config.rounds, " rounds with these settings"));
    }
  }
  while (hi - lo > 1e-3 * hi) {
    const double mid = 0.5 * (lo + hi);
    auto p = ParamsForNoise(config, mid);
    if (p.ok() && DdgEpsilon(*p, config.rounds) <= config.target_epsilon) {
      hi = mid;
      best = std::move(p);
    } else {
      lo = mid;
    }
  }
  return best;
}

// The criterion of ChooseDdgParams(bits = 0), in scaled units.
bool RoundingIsCheap(const DdgParams& p) {
  const double clipped = p.config.clip * p.scale;
  if (p.rounding_norm_bound > (1.0 + kRoundingCost) * clipped) return false;
  if (p.config.noiseless) return true;
  const double n = p.config.expected_clients;
  const double rounding_variance = n / 4.0;  // per coordinate of the sum
  const double noise_variance = n * p.local_variance.value();
  return rounding_variance <= kRoundingCost * kRoundingCost * noise_variance;
}

}  // namespace

v1::DdgSettings DdgSettingsOf(const DdgConfig& c) {
  v1::DdgSettings d;
  d.set_dimension(c.dimension);
  d.set_sketch_dimension(c.sketch_dimension);
  d.set_clip(c.clip);
  d.set_bits(static_cast<uint32_t>(c.bits));
  d.set_expected_clients(static_cast<uint32_t>(c.expected_clients));
  d.set_delta(c.delta);
  d.set_noise_multiplier(c.noise_multiplier);
  d.set_beta(c.beta);
  d.set_max_wrap_probability(c.max_wrap_probability);
  d.set_local_only(c.local_only);
  d.set_noiseless(c.noiseless);
  d.set_rotation(v1::ROTATION_RANDOMIZED_DCT);
  return d;
}

absl::StatusOr<DdgParams> DdgParamsOf(const v1::DdgSettings& d) {
  if (d.rotation() != v1::ROTATION_RANDOMIZED_DCT) {
    return absl::FailedPreconditionError(
        StrCat("the encoding's rotation ", v1::Rotation_Name(d.rotation()), " is not the one this build implements (",
               v1::Rotation_Name(v1::ROTATION_RANDOMIZED_DCT), "): its sender is an older tinyfed"));
  }
  // Settings that left the bits to each reader could have readers disagree.
  if (d.bits() == 0) return InvalidArgumentError("the encoding's settings do not name their bits");
  return ChooseDdgParams(DdgConfig{.dimension = d.dimension(),
                                   .sketch_dimension = d.sketch_dimension(),
                                   .clip = d.clip(),
                                   .bits = static_cast<int>(d.bits()),
                                   .expected_clients = static_cast<int>(d.expected_clients()),
                                   .delta = d.delta(),
                                   .noise_multiplier = d.noise_multiplier(),
                                   .target_epsilon = 0.0,
                                   .rounds = 1,
                                   .beta = d.beta(),
                                   .max_wrap_probability = d.max_wrap_probability(),
                                   .local_only = d.local_only(),
                                   .noiseless = d.noiseless()});
}

absl::StatusOr<DdgParams> ChooseDdgParams(const DdgConfig& config) {
  if (auto s = CheckConfig(config); !s.ok()) return s;
  if (config.bits != 0) return ParamsForBits(config);
  absl::Status last = InvalidArgumentError("no bit width was tried");
  for (int bits = 2; bits <= 32; ++bits) {
    DdgConfig c = config;
    c.bits = bits;
    auto p = ParamsForBits(c);
    if (p.ok() && RoundingIsCheap(*p)) return p;
    last = p.ok() ? InvalidArgumentError(StrCat("rounding at ", bits, " bits still costs more than ",
                                                kRoundingCost * 100, " % of the noise or sensitivity"))
                  : p.status();
  }
  return InvalidArgumentError(StrCat("no bit width up to 32 fits these settings: ", last.message()));
}

absl::StatusOr<std::vector<double>> DdgRdp(const DdgParams& p, int clients, int64_t rounds,
                                           std::span<const double> orders) {
  if (clients < 1 || rounds < 0) {
    return InvalidArgumentError(StrCat("need clients >= 1 and rounds >= 0, got ", clients, " and ", rounds));
  }
  if (p.config.noiseless) return InvalidArgumentError("a noiseless encoding has no privacy of its own to account");
  const int contributors = p.config.local_only ? 1 : clients;
  const double d = static_cast<double>(EncodedDimension(p.config));
  const double l2 = p.rounding_norm_bound;                 // scaled L2 sensitivity
  const double l1 = l2 * std::min(std::sqrt(d), l2);       // integers: L1 <= L2^2
  const double sigma2 = p.local_variance.value();          // per client, scaled
  const double stddev = std::sqrt(contributors * sigma2);  // of the summed noise
  double tau = 0.0;
  for (int k = 1; k < contributors; ++k) {
    tau += std::exp(-2.0 * M_PI * M_PI * sigma2 * k / (k + 1.0));
  }
  tau *= 10.0;
  const double l2s = l2 / stddev, l1s = l1 / stddev;
  std::vector<double> rdp;
  for (double a : orders) {
    if (!(a > 1.0)) return InvalidArgumentError(StrCat("RDP orders must be > 1, got ", a));
    const double t1 = a / 2.0 * l2s * l2s + tau * d;
    const double t2 = a / 2.0 * (l2s * l2s + 2.0 * l1s * tau + tau * tau * d);
    const double t3 = a / 2.0 * std::pow(l2s + std::sqrt(d) * tau, 2);
    rdp.push_back(std::min({t1, t2, t3}) * static_cast<double>(rounds));
  }
  return rdp;
}

absl::StatusOr<std::vector<int64_t>> DdgQuantize(const DdgParams& p, std::span<const float> update,
                                                 const Seed& rotation_seed, SecureRandom& rng, bool add_noise) {
  const DdgConfig& c = p.config;
  if (update.size() != c.dimension) {
    return InvalidArgumentError(StrCat("update has ", update.size(), " values, expected ", c.dimension));
  }
  double norm2 = 0.0;
  for (float v : update) {
    if (!std::isfinite(v)) return InvalidArgumentError("update has a value that is not finite");
    norm2 += static_cast<double>(v) * v;
  }
  const double clip_factor = norm2 > c.clip * c.clip ? c.clip / std::sqrt(norm2) : 1.0;
  std::vector<double> y(update.size());
  for (size_t i = 0; i < update.size(); ++i) y[i] = update[i] * clip_factor;
  if (c.sketch_dimension > 0) {
    auto sketch = CountSketch::Create(c.dimension, c.sketch_dimension, rotation_seed);
    if (!sketch.ok()) return sketch.status();
    y = sketch->Sketch(y);
    // Values sharing a bucket can add up past the clip: the sensitivity is
    // the sketch's norm, so it is clipped too.
    double sketch_norm2 = 0.0;
    for (double v : y) sketch_norm2 += v * v;
    if (sketch_norm2 > c.clip * c.clip) {
      const double f = c.clip / std::sqrt(sketch_norm2);
      for (double& v : y) v *= f;
    }
  }
  RandomRotation(y, rotation_seed);
  for (double& v : y) v *= p.scale;
  // Conditional stochastic rounding: redraw until the norm bound holds, which
  // happens with probability at least 1 - beta per draw.
  std::vector<int64_t> z(y.size());
  const double bound2 = p.rounding_norm_bound * p.rounding_norm_bound;
  for (int attempt = 0;; ++attempt) {
    if (attempt == 1000) {
      return absl::InternalError("conditional rounding failed 1000 times; the norm bound is inconsistent");
    }
    double zn = 0.0;
    for (size_t i = 0; i < y.size(); ++i) {
      const double f = std::floor(y[i]);
      const double u = static_cast<double>(rng.Next64() >> 11) * 0x1.0p-53;  // uniform in [0, 1)
      z[i] = static_cast<int64_t>(f) + (u < y[i] - f ? 1 : 0);
      zn += static_cast<double>(z[i]) * static_cast<double>(z[i]);
    }
    if (zn <= bound2) break;
  }
  if (add_noise && !c.noiseless) {
    auto sampler = DiscreteGaussianSampler::Create(p.local_variance);
    if (!sampler.ok()) return sampler.status();
    for (int64_t& v : z) v += sampler->Sample(rng);
  }
  return z;
}

std::vector<uint32_t> ReduceModulo(std::span<const int64_t> values, int bits) {
  const uint64_t mask = bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
  std::vector<uint32_t> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = static_cast<uint32_t>(static_cast<uint64_t>(values[i]) & mask);
  return out;
}

absl::StatusOr<std::vector<uint32_t>> DdgEncode(const DdgParams& p, std::span<const float> update,
                                                const Seed& rotation_seed, SecureRandom& rng, bool add_noise) {
  auto z = DdgQuantize(p, update, rotation_seed, rng, add_noise);
  if (!z.ok()) return z.status();
  return ReduceModulo(*z, p.config.bits);
}

double DdgMeanNormBound(const DdgParams& p, int clients) {
  const double n = std::max(1, clients);
  const double noise = std::sqrt(p.config.noiseless ? 0.0 : p.local_variance.value() / n);
  const double m = static_cast<double>(EncodedDimension(p.config));
  const double d = static_cast<double>(p.config.dimension);
  const double unsketch = p.config.sketch_dimension > 0 ? std::sqrt(std::ceil(d / m)) : 1.0;
  return unsketch * (p.rounding_norm_bound + noise * (std::sqrt(m) + 8.0)) / p.scale;
}

absl::StatusOr<std::vector<double>> DdgDecodeSum(const DdgParams& p, std::span<const uint32_t> sum,
                                                 const Seed& rotation_seed) {
  if (sum.size() != EncodedDimension(p.config)) {
    return InvalidArgumentError(StrCat("sum has ", sum.size(), " values, expected ", EncodedDimension(p.config)));
  }
  const int b = p.config.bits;
  const uint64_t modulus = uint64_t{1} << b;
  std::vector<double> y(sum.size());
  for (size_t i = 0; i < sum.size(); ++i) {
    if (sum[i] >= modulus) return InvalidArgumentError(StrCat("sum value ", sum[i], " is not below 2^", b));
    const int64_t v = sum[i] >= modulus / 2 ? static_cast<int64_t>(sum[i]) - static_cast<int64_t>(modulus) : sum[i];
    y[i] = static_cast<double>(v) / p.scale;
  }
  InverseRandomRotation(y, rotation_seed);
  if (p.config.sketch_dimension == 0) return y;
  auto sketch = CountSketch::Create(p.config.dimension, p.config.sketch_dimension, rotation_seed);
  if (!sketch.ok()) return sketch.status();
  return sketch->Unsketch(y);
}

}  // namespace tinyfed::dp
