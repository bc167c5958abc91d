#include "sim/internal/regions.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace tinyfed::sim::internal {

int RegionOf(size_t c, size_t clinics, int regions) {
  return static_cast<int>(c * static_cast<size_t>(regions) / clinics);
}

std::string RegionId(int r) { return absl::StrCat("region-", r + 1); }

aggregator::Config RegionalConfig(const Scenario& s, const aggregator::Config& national, int r, size_t clinics,
                                  const std::filesystem::path& work_dir) {
  int members = 0;
  for (size_t c = 0; c < clinics; ++c) members += RegionOf(c, clinics, s.regions.count) == r;
  aggregator::Config rc = national;
  rc.upstream.emplace();
  rc.upstream->device_id = RegionId(r);
  rc.national_clinics = 0;
  rc.max_rounds = 0;  // it closes with the national federation
  // Unused: the national task carries the noise; a valid value for the file.
  rc.dp.target_epsilon = 0.0;
  rc.dp.noise_multiplier = 1.0;
  rc.state_dir = work_dir / RegionId(r);
  rc.initial_model.clear();
  rc.publishing_key.clear();
  rc.cohort_size = members;
  rc.over_selection = 0.0;
  rc.min_cohort = std::clamp(static_cast<int>(std::ceil(s.federation.min_cohort * static_cast<double>(members) /
                                                        static_cast<double>(clinics))),
                             2, members);
  return rc;
}

}  // namespace tinyfed::sim::internal
