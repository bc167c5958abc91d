// For test helpers that return a value and so cannot ASSERT: the value of a
// StatusOr, or a failed test that ends at once with the status, instead of
// reading an error's value (undefined behaviour) after a non-fatal EXPECT.
#ifndef TINYFED_BASE_TESTING_VALUE_OR_DIE_H_
#define TINYFED_BASE_TESTING_VALUE_OR_DIE_H_

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/status/statusor.h"

namespace tinyfed::base::testing {

template <typename T>
T ValueOrDie(absl::StatusOr<T> v, const std::string& what) {
  if (!v.ok()) {
    std::fprintf(stderr, "FATAL in a test helper: %s: %s\n", what.c_str(), v.status().ToString().c_str());
    std::abort();
  }
  return std::move(*v);
}

}  // namespace tinyfed::base::testing

#endif  // TINYFED_BASE_TESTING_VALUE_OR_DIE_H_
