// Distributed differential privacy with secure aggregation: the distributed
// discrete Gaussian mechanism (Kairouz, Liu, Steinke 2021).
//
// Each client clips its update to L2 norm c, rotates it with a random
// rotation seeded by the cohort's shared seed (rotation.h), scales it, rounds it
// to integers with conditional stochastic rounding (norm at most the bound of
// the paper's Prop. 22 with parameter beta), adds discrete Gaussian noise of
// variance sigma_i^2 and reduces mod 2^b. The secure sum of n encodings, mapped
// back to signed integers, descaled and rotated back, is the sum of the
// clipped updates plus noise whose variance adds up to (z c)^2.
//
// Accounting (DdgRdp) follows the paper's Theorem 1 and Prop. 14, with
// sensitivities inflated by rounding. It claims no amplification by client
// sampling: the aggregator knows who took part, so the sampling is not secret.
//
// All functions are thread-compatible; bad arguments get INVALID_ARGUMENT.
#ifndef TINYFED_DP_DDG_H_
#define TINYFED_DP_DDG_H_

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/dp/discrete_gaussian.h"
#include "tinyfed/dp/secure_random.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::dp {

struct DdgConfig {
  size_t dimension = 0;  // d: length of a client's float update
  // m: 0, or the clipped update is compressed to a count sketch of m values
  // (count_sketch.h) before it is rotated, clipped again (a sketch can
  // lengthen it) and encoded; the server decodes the sum's sketch back to d
  // values. Noise and bits are those of m values.
  size_t sketch_dimension = 0;
  double clip = 0.0;  // c: L2 clip norm
  // b: the secure sum is taken mod 2^b, 2 <= b <= 32; 0: ChooseDdgParams
  // chooses the fewest bits whose rounding costs little (see there).
  int bits = 0;
  int expected_clients = 0;  // n: clients whose noise adds up to the target
  double delta = 1e-5;
  // Set exactly one: the central noise multiplier z (noise stddev / c), or a
  // target epsilon over `rounds` rounds, for which the helper finds z.
  double noise_multiplier = 0.0;
  double target_epsilon = 0.0;
  int64_t rounds = 1;
  double beta = std::exp(-0.5);        // conditional rounding, in [0, 1)
  double max_wrap_probability = 1e-4;  // per coordinate and round
  bool local_only = false;             // each client adds the full noise itself
  // Encoding only, no noise: the update already carries its own (patient-
  // level DP-SGD at the clinic). Set neither noise_multiplier nor
  // target_epsilon; DdgRdp refuses such params.
  bool noiseless = false;
};

struct DdgParams {
  DdgConfig config;
  double scale = 0.0;              // integers per real unit (1 / granularity)
  double noise_multiplier = 0.0;   // z, the central noise stddev / c
  Rational local_variance;         // sigma_i^2 per client, in scaled units
  double rounding_norm_bound = 0;  // conditional rounding bound, scaled units
  double wrap_probability = 0.0;   // bound per coordinate and round
};

// The number of values a client's encoding holds: what SecAgg+ sums.
inline size_t EncodedDimension(const DdgConfig& config) {
  return config.sketch_dimension > 0 ? config.sketch_dimension : config.dimension;
}

// The config as a round's task carries it (without the rotation seed), and
// the params every client derives from it. The noise multiplier and the bits
// must be chosen (target_epsilon is not carried); FAILED_PRECONDITION for
// settings of a rotation this build does not implement.
v1::DdgSettings DdgSettingsOf(const DdgConfig& config);
absl::StatusOr<DdgParams> DdgParamsOf(const v1::DdgSettings& settings);

// Picks scale and noise: the scale fits k standard deviations of the
// subgaussian sum in b bits, with k set by max_wrap_probability. Refuses
// settings where b bits cannot hold the sum at that probability.
//
// With bits = 0 it also picks b: the fewest bits at which rounding costs at
// most kRoundingCost, both in privacy (the rounded update's norm bound, the
// sensitivity, at most that fraction above the clip) and in accuracy (the
// summed rounding error's standard deviation at most that fraction of the
// summed noise's). With a target epsilon the noise is found at each b, so
// the first criterion bounds how much more noise the rounding costs.
inline constexpr double kRoundingCost = 0.05;
absl::StatusOr<DdgParams> ChooseDdgParams(const DdgConfig& config);

// RDP of `rounds` rounds in which `clients` clients each added the local
// noise (for local_only, of one client's release).
absl::StatusOr<std::vector<double>> DdgRdp(const DdgParams& params, int clients, int64_t rounds,
                                           std::span<const double> orders);

// Client: `update` (config.dimension values) clipped, sketched (with a
// sketch_dimension), rotated, scaled, rounded and noised:
// EncodedDimension(config) integers, not yet reduced. Noise is
// drawn from `rng`; add_noise = false exists for tests and measurement only.
absl::StatusOr<std::vector<int64_t>> DdgQuantize(const DdgParams& params, std::span<const float> update,
                                                 const Seed& rotation_seed, SecureRandom& rng, bool add_noise = true);
// The integers mod 2^bits (two's complement wrap), as secure aggregation sums them.
std::vector<uint32_t> ReduceModulo(std::span<const int64_t> values, int bits);
// DdgQuantize then ReduceModulo: what a client hands to secure aggregation.
absl::StatusOr<std::vector<uint32_t>> DdgEncode(const DdgParams& params, std::span<const float> update,
                                                const Seed& rotation_seed, SecureRandom& rng, bool add_noise = true);

// The largest L2 norm the decoded mean of `clients` honest encodings can
// have: each rounded update within the rounding bound, plus the summed
// noise's norm bounded at its stddev times sqrt(m) + 8 (exceeded with
// probability below 1e-14), times what unsketching can lengthen it by. A
// larger mean came from a wrapped sum or an update its client did not clip.
double DdgMeanNormBound(const DdgParams& params, int clients);

// Server: the mod-2^b sum of encodings (EncodedDimension(config) values) ->
// the real-valued sum of the clipped updates plus noise (config.dimension
// values; with a sketch, plus the sketch's cross-talk). Divide by the
// survivor count for the mean.
absl::StatusOr<std::vector<double>> DdgDecodeSum(const DdgParams& params, std::span<const uint32_t> sum,
                                                 const Seed& rotation_seed);

}  // namespace tinyfed::dp

#endif  // TINYFED_DP_DDG_H_
