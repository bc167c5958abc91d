// How a simulation splits one dataset among clinics.
#ifndef TINYFED_SIM_PARTITION_H_
#define TINYFED_SIM_PARTITION_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace tinyfed::sim {

// Indices of each client's samples.
using Partition = std::vector<std::vector<size_t>>;

// Shuffled, near-equal shares.
absl::StatusOr<Partition> IidPartition(size_t num_samples, int clients, uint64_t seed);

// Label skew as in NIID-Bench (Li et al. 2022): each class is split among the
// clients in proportions drawn from Dirichlet(alpha); draws are repeated until
// every client holds at least `min_size` samples. Small alpha: each clinic
// sees few classes. INVALID_ARGUMENT if alpha <= 0, clients < 1, or the data
// cannot give every client min_size samples.
absl::StatusOr<Partition> DirichletLabelPartition(std::span<const int> labels, int clients, double alpha, uint64_t seed,
                                                  size_t min_size = 10);

}  // namespace tinyfed::sim

#endif  // TINYFED_SIM_PARTITION_H_
