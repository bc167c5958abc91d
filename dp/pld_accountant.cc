#include "tinyfed/dp/pld_accountant.h"

#include <fftw3.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "dp/internal/fftw_planner.h"

namespace tinyfed::dp {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;
constexpr double kInf = std::numeric_limits<double>::infinity();
// Standard deviations each side of the Gaussians' means that the grid
// covers; beyond them lies less than 1e-17 of the mass, which still goes to
// the tails (infinity or the lowest point), so nothing is lost.
constexpr double kSigmas = 8.5;

// P(N(mean, sigma^2) in [a, b]), accurate in both tails.
double GaussianMass(double mean, double sigma, double a, double b) {
  const double za = (a - mean) / (sigma * M_SQRT2), zb = (b - mean) / (sigma * M_SQRT2);
  if (za >= 0) return 0.5 * (std::erfc(za) - std::erfc(zb));
  if (zb <= 0) return 0.5 * (std::erfc(-zb) - std::erfc(-za));
  return 1.0 - 0.5 * std::erfc(-za) - 0.5 * std::erfc(zb);
}

// The subsampled Gaussian's two output distributions with sensitivity 1:
// the plain N(0, s^2) and the mixture (1 - q) N(0, s^2) + q N(1, s^2).
struct SubsampledGaussian {
  double q, sigma;
  double Plain(double a, double b) const { return GaussianMass(0.0, sigma, a, b); }
  double Mixture(double a, double b) const {
    return (1.0 - q) * GaussianMass(0.0, sigma, a, b) + q * GaussianMass(1.0, sigma, a, b);
  }
  // log(mixture density / plain density) at x: log(1 - q + q e^t).
  double MixtureLoss(double x) const {
    const double t = (2.0 * x - 1.0) / (2.0 * sigma * sigma);
    if (q == 1.0) return t;
    if (t > 30.0) return t + std::log(q) + std::log1p((1.0 - q) / q * std::exp(-t));
    return std::log1p(q * std::expm1(t));
  }
  // The x at which MixtureLoss is l; -infinity below its infimum log(1 - q).
  double XOfMixtureLoss(double l) const {
    if (q < 1.0 && l <= std::log1p(-q)) return -kInf;
    const double s2 = sigma * sigma;
    if (q == 1.0) return s2 * l + 0.5;
    if (l > 30.0) return s2 * (l - std::log(q) + std::log1p((q - 1.0) * std::exp(-l))) + 0.5;
    return s2 * std::log1p(std::expm1(l) / q) + 0.5;
  }
};

// a * b by FFT: the distribution of the sum of independent losses. The
// rounding error's bound is returned in *error (a sum over every entry).
std::vector<double> Convolve(const std::vector<double>& a, const std::vector<double>& b, double* error) {
  const size_t out = a.size() + b.size() - 1;
  size_t n = 1;
  while (n < out) n <<= 1;
  const size_t bins = n / 2 + 1;
  double* real = fftw_alloc_real(n);
  fftw_complex* fa = fftw_alloc_complex(bins);
  fftw_complex* fb = fftw_alloc_complex(bins);
  fftw_plan forward_a, forward_b, backward;
  {
    absl::MutexLock lock(&internal::FftwPlannerMutex());
    forward_a = fftw_plan_dft_r2c_1d(static_cast<int>(n), real, fa, FFTW_ESTIMATE);
    forward_b = fftw_plan_dft_r2c_1d(static_cast<int>(n), real, fb, FFTW_ESTIMATE);
    backward = fftw_plan_dft_c2r_1d(static_cast<int>(n), fa, real, FFTW_ESTIMATE);
  }
  std::fill(real, real + n, 0.0);
  std::copy(a.begin(), a.end(), real);
  fftw_execute(forward_a);
  std::fill(real, real + n, 0.0);
  std::copy(b.begin(), b.end(), real);
  fftw_execute(forward_b);
  for (size_t i = 0; i < bins; ++i) {
    const double re = fa[i][0] * fb[i][0] - fa[i][1] * fb[i][1];
    const double im = fa[i][0] * fb[i][1] + fa[i][1] * fb[i][0];
    fa[i][0] = re / static_cast<double>(n);
    fa[i][1] = im / static_cast<double>(n);
  }
  fftw_execute(backward);
  std::vector<double> result(real, real + out);
  {
    absl::MutexLock lock(&internal::FftwPlannerMutex());
    fftw_destroy_plan(forward_a);
    fftw_destroy_plan(forward_b);
    fftw_destroy_plan(backward);
  }
  fftw_free(real);
  fftw_free(fa);
  fftw_free(fb);
  // FFT rounding (Higham, Accuracy and Stability, sec. 24.1): each
  // transform errs in the 2-norm by at most about 5 u log2(n) of its
  // result's norm, so the convolution errs by at most
  // 15 u log2(n) (|a| + |b| + |c|) in the 2-norm, and by sqrt(out) times
  // that in total mass.
  double norm_a = 0, norm_b = 0, norm_c = 0;
  for (double v : a) norm_a += v * v;
  for (double v : b) norm_b += v * v;
  for (double v : result) norm_c += v * v;
  const double l2 = 15.0 * (DBL_EPSILON / 2) * std::log2(static_cast<double>(n)) *
                    (std::sqrt(norm_a) + std::sqrt(norm_b) + std::sqrt(norm_c));
  *error = l2 * std::sqrt(static_cast<double>(out));
  for (double& v : result) v = std::max(v, 0.0);
  return result;
}

absl::Status CheckMechanism(double q, double z) {
  if (!(q > 0.0 && q <= 1.0)) return InvalidArgumentError(StrCat("sampling rate must be in (0, 1], got ", q));
  if (!(z >= 0.05 && z <= 1e4)) return InvalidArgumentError(StrCat("noise multiplier must be in [0.05, 1e4], got ", z));
  return absl::OkStatus();
}

absl::Status CheckOptions(const PldOptions& o) {
  if (!(o.discretization >= 1e-6 && o.discretization <= 0.1)) {
    return InvalidArgumentError(StrCat("discretization must be in [1e-6, 0.1], got ", o.discretization));
  }
  if (!(o.tail_mass > 0.0 && o.tail_mass <= 1e-6)) {
    return InvalidArgumentError(StrCat("tail mass must be in (0, 1e-6], got ", o.tail_mass));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PrivacyLossDistribution> PrivacyLossDistribution::SampledGaussian(double sampling_rate,
                                                                                 double noise_multiplier,
                                                                                 Direction direction,
                                                                                 const PldOptions& options) {
  if (auto s = CheckMechanism(sampling_rate, noise_multiplier); !s.ok()) return s;
  if (auto s = CheckOptions(options); !s.ok()) return s;
  const SubsampledGaussian g{sampling_rate, noise_multiplier};
  const double h = options.discretization, sigma = noise_multiplier;
  const bool remove = direction == Direction::kRemove;
  // Remove: x ~ mixture, loss MixtureLoss(x), rising in x. Add: x ~ plain,
  // loss -MixtureLoss(x), falling in x.
  auto p_mass = [&](double a, double b) { return remove ? g.Mixture(a, b) : g.Plain(a, b); };
  auto q_mass = [&](double a, double b) { return remove ? g.Plain(a, b) : g.Mixture(a, b); };
  auto loss_at = [&](double x) { return remove ? g.MixtureLoss(x) : -g.MixtureLoss(x); };
  auto x_at = [&](double l) { return remove ? g.XOfMixtureLoss(l) : g.XOfMixtureLoss(-l); };
  const double x_lo = -kSigmas * sigma, x_hi = (remove ? 1.0 : 0.0) + kSigmas * sigma;
  const double loss_lo = std::min(loss_at(x_lo), loss_at(x_hi));
  const double loss_hi = std::max(loss_at(x_lo), loss_at(x_hi));
  const auto i_lo = static_cast<int64_t>(std::floor(loss_lo / h));
  const auto i_hi = static_cast<int64_t>(std::ceil(loss_hi / h));
  if (i_hi - i_lo > (int64_t{1} << 26)) {
    return InvalidArgumentError(StrCat("a discretization of ", h, " needs ", i_hi - i_lo,
                                       " grid points for noise multiplier ", sigma, "; use a coarser one"));
  }
  // The x interval whose losses lie in (l_a, l_b].
  auto interval = [&](double l_a, double l_b) {
    const double xa = x_at(l_a), xb = x_at(l_b);
    return std::pair{std::min(xa, xb), std::max(xa, xb)};
  };
  std::vector<double> mass(static_cast<size_t>(i_hi - i_lo + 1), 0.0);
  {
    // Losses at or below the lowest point move up to it.
    auto [a, b] = remove ? std::pair{-kInf, x_at(i_lo * h)} : std::pair{x_at(i_lo * h), kInf};
    mass[0] = p_mass(a, b);
  }
  const double keep_low = 1.0 / -std::expm1(-h);
  for (int64_t i = i_lo + 1; i <= i_hi; ++i) {
    const double l_prev = static_cast<double>(i - 1) * h;
    auto [a, b] = interval(l_prev, static_cast<double>(i) * h);
    const double p = p_mass(a, b);
    if (p <= 0.0) continue;
    // Split p between the ends so that Q's mass, p * E[e^-L], is kept too.
    const double upper = std::clamp((p - q_mass(a, b) * std::exp(l_prev)) * keep_low, 0.0, p);
    mass[static_cast<size_t>(i - i_lo)] += upper;
    mass[static_cast<size_t>(i - 1 - i_lo)] += p - upper;
  }
  auto [a, b] = remove ? std::pair{x_at(i_hi * h), kInf} : std::pair{-kInf, x_at(i_hi * h)};
  const double infinity = p_mass(a, b);
  PrivacyLossDistribution pld(h, i_lo, std::move(mass), infinity, options.tail_mass);
  pld.Truncate();
  return pld;
}

void PrivacyLossDistribution::Truncate() {
  // High tail: to infinity (pessimistic). Low tail: up to the lowest kept
  // point (pessimistic: delta rises with the loss).
  size_t end = mass_.size();
  double dropped = 0.0;
  while (end > 1 && dropped + mass_[end - 1] <= tail_mass_) dropped += mass_[--end];
  infinity_mass_ += dropped;
  mass_.resize(end);
  size_t begin = 0;
  double lifted = 0.0;
  while (begin + 1 < mass_.size() && lifted + mass_[begin] <= tail_mass_) lifted += mass_[begin++];
  if (begin > 0) {
    mass_.erase(mass_.begin(), mass_.begin() + static_cast<std::ptrdiff_t>(begin));
    mass_[0] += lifted;
    offset_ += static_cast<int64_t>(begin);
  }
}

PrivacyLossDistribution PrivacyLossDistribution::Compose(const PrivacyLossDistribution& other) const {
  double error = 0.0;
  std::vector<double> mass = Convolve(mass_, other.mass_, &error);
  const double infinity = infinity_mass_ + other.infinity_mass_ - infinity_mass_ * other.infinity_mass_ + error;
  PrivacyLossDistribution result(h_, offset_ + other.offset_, std::move(mass), std::min(1.0, infinity),
                                 std::max(tail_mass_, other.tail_mass_));
  result.Truncate();
  return result;
}

PrivacyLossDistribution PrivacyLossDistribution::SelfCompose(int64_t times) const {
  PrivacyLossDistribution result(h_, 0, {1.0}, 0.0, tail_mass_);  // no loss: the identity
  PrivacyLossDistribution base = *this;
  for (int64_t k = times; k > 0; k >>= 1) {
    if (k & 1) result = result.Compose(base);
    if (k > 1) base = base.Compose(base);
  }
  return result;
}

double PrivacyLossDistribution::Delta(double epsilon) const {
  double delta = infinity_mass_;
  for (size_t i = mass_.size(); i-- > 0;) {
    const double loss = static_cast<double>(offset_ + static_cast<int64_t>(i)) * h_;
    if (loss <= epsilon) break;
    delta += mass_[i] * -std::expm1(epsilon - loss);
  }
  return delta;
}

double PrivacyLossDistribution::Epsilon(double delta) const {
  if (infinity_mass_ > delta) return kInf;
  // Above the grid point l_i (and below the next) delta(eps) is
  // infinity + S1 - e^eps S2 over the points above eps: walk down from the
  // top until it passes delta, then solve within that gap.
  double s1 = 0.0, s2 = 0.0;
  for (size_t i = mass_.size(); i-- > 0;) {
    const double loss = static_cast<double>(offset_ + static_cast<int64_t>(i)) * h_;
    s1 += mass_[i];
    s2 += mass_[i] * std::exp(-loss);
    const double below = i > 0 ? static_cast<double>(offset_ + static_cast<int64_t>(i) - 1) * h_ : -kInf;
    // delta at eps = below, with the points above `below` counted.
    const double at_below = below == -kInf ? infinity_mass_ + s1 : infinity_mass_ + s1 - std::exp(below) * s2;
    if (at_below > delta || below <= 0.0) {
      // delta(eps) = delta within (below, loss]: e^eps = (infinity + s1 - delta) / s2.
      const double eps = std::log((infinity_mass_ + s1 - delta) / s2);
      return std::max(0.0, std::min(eps, loss));
    }
  }
  return 0.0;
}

namespace {

struct Composed {
  PrivacyLossDistribution remove, add;
};

absl::StatusOr<Composed> Compose(std::span<const SampledGaussianSteps> events, const PldOptions& options) {
  if (auto s = CheckOptions(options); !s.ok()) return s;
  std::map<std::pair<double, double>, int64_t> groups;
  for (const auto& e : events) {
    if (auto s = CheckMechanism(e.sampling_rate, e.noise_multiplier); !s.ok()) return s;
    if (e.steps < 0) return InvalidArgumentError(StrCat("steps must be non-negative, got ", e.steps));
    if (e.steps > 0) groups[{e.sampling_rate, e.noise_multiplier}] += e.steps;
  }
  using Direction = PrivacyLossDistribution::Direction;
  std::optional<Composed> total;
  for (const auto& [mechanism, steps] : groups) {
    auto remove =
        PrivacyLossDistribution::SampledGaussian(mechanism.first, mechanism.second, Direction::kRemove, options);
    if (!remove.ok()) return remove.status();
    auto add = PrivacyLossDistribution::SampledGaussian(mechanism.first, mechanism.second, Direction::kAdd, options);
    if (!add.ok()) return add.status();
    Composed group{remove->SelfCompose(steps), add->SelfCompose(steps)};
    if (!total) {
      total.emplace(std::move(group));
    } else {
      total.emplace(Composed{total->remove.Compose(group.remove), total->add.Compose(group.add)});
    }
  }
  if (!total) {
    auto none = PrivacyLossDistribution::SampledGaussian(1.0, 1.0, Direction::kRemove, options);
    if (!none.ok()) return none.status();
    return Composed{none->SelfCompose(0), none->SelfCompose(0)};
  }
  return *std::move(total);
}

// Accountants ask the same question again and again (every gateway of a
// simulation, every budget check): remember the last answers.
using MemoKey = std::tuple<std::vector<std::tuple<double, double, int64_t>>, double, double, double>;
struct Memo {
  absl::Mutex mu;
  std::map<MemoKey, double> answers ABSL_GUARDED_BY(mu);
};
Memo& EpsilonMemo() {
  static auto* memo = new Memo;
  return *memo;
}

}  // namespace

absl::StatusOr<double> PldEpsilon(std::span<const SampledGaussianSteps> events, double delta,
                                  const PldOptions& options) {
  if (!(delta > 0.0 && delta < 1.0)) return InvalidArgumentError(StrCat("delta must be in (0, 1), got ", delta));
  MemoKey key;
  for (const auto& e : events) std::get<0>(key).emplace_back(e.sampling_rate, e.noise_multiplier, e.steps);
  std::sort(std::get<0>(key).begin(), std::get<0>(key).end());
  std::get<1>(key) = delta;
  std::get<2>(key) = options.discretization;
  std::get<3>(key) = options.tail_mass;
  Memo& memo = EpsilonMemo();
  {
    absl::MutexLock lock(&memo.mu);
    if (auto it = memo.answers.find(key); it != memo.answers.end()) return it->second;
  }
  auto composed = Compose(events, options);
  if (!composed.ok()) return composed.status();
  const double epsilon = std::max(composed->remove.Epsilon(delta), composed->add.Epsilon(delta));
  absl::MutexLock lock(&memo.mu);
  if (memo.answers.size() >= 256) memo.answers.clear();
  memo.answers.emplace(std::move(key), epsilon);
  return epsilon;
}

absl::StatusOr<double> PldDelta(std::span<const SampledGaussianSteps> events, double epsilon,
                                const PldOptions& options) {
  if (!(epsilon >= 0.0) || !std::isfinite(epsilon)) {
    return InvalidArgumentError(StrCat("epsilon must be finite and non-negative, got ", epsilon));
  }
  auto composed = Compose(events, options);
  if (!composed.ok()) return composed.status();
  return std::max(composed->remove.Delta(epsilon), composed->add.Delta(epsilon));
}

absl::StatusOr<double> PldNoiseMultiplierForEpsilon(double sampling_rate, int64_t steps, double delta,
                                                    double target_epsilon, const PldOptions& options) {
  if (!(target_epsilon > 0.0) || !std::isfinite(target_epsilon)) {
    return InvalidArgumentError(StrCat("target epsilon must be positive, got ", target_epsilon));
  }
  if (steps < 1) return InvalidArgumentError(StrCat("steps must be at least 1, got ", steps));
  auto epsilon_at = [&](double z) -> absl::StatusOr<double> {
    const SampledGaussianSteps e{sampling_rate, z, steps};
    return PldEpsilon({&e, 1}, delta, options);
  };
  double lo = 0.05, hi = 0.5;
  for (;;) {
    auto eps = epsilon_at(hi);
    if (!eps.ok()) return eps.status();
    if (*eps <= target_epsilon) break;
    lo = hi;
    hi *= 2.0;
    if (hi > 1e4) {
      return InvalidArgumentError(StrCat("no noise multiplier up to 1e4 reaches epsilon ", target_epsilon, " in ",
                                         steps, " steps at sampling rate ", sampling_rate));
    }
  }
  while (hi - lo > 1e-3 * hi) {
    const double mid = 0.5 * (lo + hi);
    auto eps = epsilon_at(mid);
    if (!eps.ok()) return eps.status();
    (*eps <= target_epsilon ? hi : lo) = mid;
  }
  return hi;
}

}  // namespace tinyfed::dp
