// The federation as separate processes: `tinyfed aggregator` and one
// `tinyfed client run` per clinic, every clinic online; results are read back
// from the aggregator's state directory (traffic is not measured here).
// With regions, one more `tinyfed aggregator` per region ([upstream]) that
// its clinics call; a region to kill is killed (SIGKILL) once its national
// round has drawn its cohort, and started again at once on the same port.
#ifndef TINYFED_SIM_INTERNAL_PROCESS_FEDERATION_H_
#define TINYFED_SIM_INTERNAL_PROCESS_FEDERATION_H_

#include <filesystem>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "sim/internal/federation_data.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/sim/simulation.h"

namespace tinyfed::sim::internal {

// Adds each round to report.rounds (and tells `progress`) as the
// aggregator finishes it; `tinyfed` is the binary to run. The head of the
// last model published.
absl::StatusOr<v1::Head> RunProcesses(const Scenario& s, aggregator::Config config, const std::vector<Clinic>& clinics,
                                      const std::filesystem::path& work_dir, const std::filesystem::path& tinyfed,
                                      std::span<const float> test_embeddings, std::span<const int> test_labels,
                                      const Progress& progress, SimulationReport& report);

}  // namespace tinyfed::sim::internal

#endif  // TINYFED_SIM_INTERNAL_PROCESS_FEDERATION_H_
