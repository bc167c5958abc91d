// Clipping and continuous Gaussian noise.
//
// Fixed clipping bounds one client's influence (its L2 sensitivity) by C.
// Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021) moves C toward
// a target quantile of the update norms, learning from a noised count of the
// clients whose update fell under C; that count's noise is part of the
// accounting (AdaptiveClippingUpdateNoise).
#ifndef TINYFED_DP_CLIPPING_H_
#define TINYFED_DP_CLIPPING_H_

#include <span>

#include "absl/status/statusor.h"
#include "tinyfed/dp/secure_random.h"

namespace tinyfed::dp {

// Scales `update` to L2 norm at most `clip` (> 0); returns the norm before.
double ClipL2(std::span<float> update, double clip);

// Adds N(0, stddev^2) to every value, from the secure generator, by a
// sampler that closes the floating-point gaps of a plain one: the central
// mechanism at a trusted aggregator (stddev = z C, once, on the sum), or
// DP-SGD's noise at a clinic (client/private_head_trainer.h).
void AddGaussianNoise(std::span<float> values, double stddev, SecureRandom& rng);
void AddGaussianNoise(std::span<double> values, double stddev, SecureRandom& rng);

// Noise multiplier left for the update when the mechanism as a whole must
// have noise multiplier z and the clipped-count release uses noise stddev
// sigma_b: z_update = (z^-2 - (2 sigma_b)^-2)^(-1/2) (Andrew et al. Thm. 1).
// Charging z then accounts for both releases. INVALID_ARGUMENT when 2 sigma_b
// <= z (the count alone would use the whole budget).
absl::StatusOr<double> AdaptiveClippingUpdateNoise(double z, double count_noise_stddev);

class AdaptiveClip {
 public:
  struct Options {
    double initial_clip = 0.1;
    double target_quantile = 0.5;  // fraction of updates to fall under the clip
    double learning_rate = 0.2;    // eta in C <- C exp(-eta (b - gamma))
  };
  // INVALID_ARGUMENT for a non-positive clip or learning rate, or a quantile
  // outside (0, 1).
  static absl::StatusOr<AdaptiveClip> Create(const Options& options);

  double clip() const { return clip_; }
  // A client's contribution to the count: 1 when its update's norm is at
  // most the current clip.
  int Indicator(double update_norm) const { return update_norm <= clip_ ? 1 : 0; }
  // Server: the noised sum of indicators over `clients` participants moves
  // the clip geometrically toward the target quantile.
  void Update(double noised_indicator_sum, int clients);

 private:
  explicit AdaptiveClip(const Options& o) : options_(o), clip_(o.initial_clip) {}
  Options options_;
  double clip_;
};

}  // namespace tinyfed::dp

#endif  // TINYFED_DP_CLIPPING_H_
