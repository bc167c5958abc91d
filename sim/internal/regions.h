// How a scenario's clinics split into regions ([regions]), and the
// configuration of each region's aggregator: the national round's settings
// for its own clinics, under a regional aggregator that publishes nothing.
// The one-process and the process federations both build regions from it.
#ifndef TINYFED_SIM_INTERNAL_REGIONS_H_
#define TINYFED_SIM_INTERNAL_REGIONS_H_

#include <cstddef>
#include <filesystem>
#include <string>

#include "tinyfed/aggregator/config.h"
#include "tinyfed/sim/scenario.h"

namespace tinyfed::sim::internal {

// The region (0-based) of clinic `c` of `clinics`: contiguous blocks.
int RegionOf(size_t c, size_t clinics, int regions);
// Region r's device id at the national aggregator: "region-1", ...
std::string RegionId(int r);
// Region r's aggregator: `national`'s deadlines and SecAgg+ settings (its
// rounds take training, DP and encoding from the national task) for the
// clinics of that region, its share of the scenario's
// minimum cohort, its state in work_dir/region-N, the national roots.
aggregator::Config RegionalConfig(const Scenario& s, const aggregator::Config& national, int r, size_t clinics,
                                  const std::filesystem::path& work_dir);

}  // namespace tinyfed::sim::internal

#endif  // TINYFED_SIM_INTERNAL_REGIONS_H_
