// FFTW's planner (plan creation and destruction) is not thread-safe, and it
// is one per process: every caller in tinyfed holds this one lock around it.
// Executing a plan needs no lock.
#ifndef TINYFED_DP_INTERNAL_FFTW_PLANNER_H_
#define TINYFED_DP_INTERNAL_FFTW_PLANNER_H_

#include "absl/synchronization/mutex.h"

namespace tinyfed::dp::internal {

absl::Mutex& FftwPlannerMutex();

}  // namespace tinyfed::dp::internal

#endif  // TINYFED_DP_INTERNAL_FFTW_PLANNER_H_
