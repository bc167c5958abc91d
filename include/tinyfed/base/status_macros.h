// Early returns on error, for code that returns absl::Status or
// absl::StatusOr<T>:
//
//   TINYFED_RETURN_IF_ERROR(store.Add(samples));
//   TINYFED_ASSIGN_OR_RETURN(auto ledger, dp::PrivacyLedger::Open(path, budget));
#ifndef TINYFED_BASE_STATUS_MACROS_H_
#define TINYFED_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TINYFED_RETURN_IF_ERROR(expr)          \
  do {                                         \
    if (auto _s = (expr); !_s.ok()) return _s; \
  } while (0)

#define TINYFED_STATUS_CONCAT_INNER(a, b) a##b
#define TINYFED_STATUS_CONCAT(a, b) TINYFED_STATUS_CONCAT_INNER(a, b)

// `lhs` may declare (auto x) or name an existing variable.
#define TINYFED_ASSIGN_OR_RETURN(lhs, expr) \
  TINYFED_ASSIGN_OR_RETURN_IMPL(TINYFED_STATUS_CONCAT(_statusor_, __LINE__), lhs, expr)
#define TINYFED_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)

#endif  // TINYFED_BASE_STATUS_MACROS_H_
