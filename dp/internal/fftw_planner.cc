#include "dp/internal/fftw_planner.h"

namespace tinyfed::dp::internal {

absl::Mutex& FftwPlannerMutex() {
  static auto* mu = new absl::Mutex;  // never destroyed: used until exit
  return *mu;
}

}  // namespace tinyfed::dp::internal
