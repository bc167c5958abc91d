// Reading TOML configuration files (the aggregator's config, simulation
// scenarios) so that every mistake names its file, line and key: unknown
// keys, wrong types and values out of range are errors, never defaults.
#ifndef TINYFED_AGGREGATOR_TOML_READER_H_
#define TINYFED_AGGREGATOR_TOML_READER_H_

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tinyfed/base/status_macros.h"
#include "toml++/toml.h"

namespace tinyfed::aggregator {

// INVALID_ARGUMENT "SOURCE:LINE: problem" for a syntax error.
absl::StatusOr<toml::table> ParseToml(std::string_view text, const std::string& source);

// Reads one table, remembering which keys were asked for so that the rest
// can be reported as unknown. Absent keys leave *out unchanged.
class TomlTableReader {
 public:
  TomlTableReader(const toml::table& table, std::string section, std::string source)
      : table_(table), section_(std::move(section)), source_(std::move(source)) {}

  absl::Status Double(std::string_view key, double* out, double min, double max);
  absl::Status Integer(std::string_view key, int64_t* out, int64_t min, int64_t max);
  template <typename Int>
  absl::Status Integer(std::string_view key, Int* out, int64_t min, int64_t max) {
    int64_t v = static_cast<int64_t>(*out);
    absl::Status s = Integer(key, &v, min, max);
    *out = static_cast<Int>(v);
    return s;
  }
  // An array of numbers, each in [min, max].
  absl::Status Doubles(std::string_view key, std::vector<double>* out, double min, double max);
  // An array of integers, each in [min, max].
  absl::Status Integers(std::string_view key, std::vector<int64_t>* out, int64_t min, int64_t max);
  // An array of non-empty strings.
  absl::Status Strings(std::string_view key, std::vector<std::string>* out);
  absl::Status Seconds(std::string_view key, absl::Duration* out, double min, double max);
  absl::Status Bool(std::string_view key, bool* out);
  // Non-empty strings only.
  absl::Status String(std::string_view key, std::string* out);
  // One of `choices`; its index goes to *out.
  absl::Status Choice(std::string_view key, const std::vector<std::string>& choices, int* out);
  // The sub-table `key`, or nullptr when absent.
  absl::StatusOr<const toml::table*> Table(std::string_view key);
  absl::Status RejectUnknown() const;
  const std::string& source() const { return source_; }
  absl::Status Error(const toml::node& node, std::string_view key, std::string_view problem) const;
  // An error about the whole table (no single key).
  absl::Status Error(std::string_view problem) const;

 private:
  const toml::node* Find(std::string_view key);
  const toml::table& table_;
  std::string section_;
  std::string source_;
  std::set<std::string> known_;
};

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_TOML_READER_H_
