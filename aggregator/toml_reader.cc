#include "tinyfed/aggregator/toml_reader.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tinyfed::aggregator {

absl::StatusOr<toml::table> ParseToml(std::string_view text, const std::string& source) {
  try {
    return toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", e.source().begin.line, ": ", std::string(e.description())));
  }
}

absl::Status TomlTableReader::Double(std::string_view key, double* out, double min, double max) {
  const toml::node* node = Find(key);
  if (node == nullptr) return absl::OkStatus();
  std::optional<double> v = node->value<double>();  // integers convert too
  if (!v || node->is_boolean()) return Error(*node, key, "must be a number");
  if (!std::isfinite(*v) || *v < min || *v > max) {
    return Error(*node, key, absl::StrCat("must be in [", min, ", ", max, "], got ", *v));
  }
  *out = *v;
  return absl::OkStatus();
}

absl::Status TomlTableReader::Doubles(std::string_view key, std::vector<double>* out, double min, double max) {
  const toml::node* node = Find(key);
  if (node == nullptr) return absl::OkStatus();
  const toml::array* array = node->as_array();
  if (array == nullptr) return Error(*node, key, "must be an array of numbers");
  std::vector<double> values;
  for (const toml::node& item : *array) {
    std::optional<double> v = item.value<double>();
    if (!v || item.is_boolean()) return Error(*node, key, "must be an array of numbers");
    if (!std::isfinite(*v) || *v < min || *v > max) {
      return Error(*node, key, absl::StrCat("values must be in [", min, ", ", max, "], got ", *v));
    }
    values.push_back(*v);
  }
  *out = std::move(values);
  return absl::OkStatus();
}

absl::Status TomlTableReader::Integers(std::string_view key, std::vector<int64_t>* out, int64_t min, int64_t max) {
  const toml::node* node = Find(key);
  if (node == nullptr) return absl::OkStatus();
  const toml::array* array = node->as_array();
  if (array == nullptr) return Error(*node, key, "must be an array of integers");
  std::vector<int64_t> values;
  for (const toml::node& item : *array) {
    if (!item.is_integer()) return Error(*node, key, "must be an array of integers");
    const int64_t v = item.as_integer()->get();
    if (v < min || v > max) return Error(*node, key, absl::StrCat("values must be in [", min, ", ", max, "], got ", v));
    values.push_back(v);
  }
  *out = std::move(values);
  return absl::OkStatus();
}

absl::Status TomlTableReader::Strings(std::string_view key, std::vector<std::string>* out) {
  const toml::node* node = Find(key);
  if (node == nullptr) return absl::OkStatus();
  const toml::array* array = node->as_array();
  if (array == nullptr) return Error(*node, key, "must be an array of strings");
  std::vector<std::string> values;
  for (const toml::node& item : *array) {
    if (!item.is_string() || item.as_string()->get().empty()) {
      return Error(*node, key, "must be an array of non-empty strings");
    }
    values.push_back(item.as_string()->get());
  }
  *out = std::move(values);
  return absl::OkStatus();
}

absl::Status TomlTableReader::Integer(std::string_view key, int64_t* out, int64_t min, int64_t max) {
  const toml::node* node = Find(key);
  if (node == nullptr) return absl::OkStatus();
  if (!node->is_integer()) return Error(*node, key, "must be an integer");
  const int64_t v = node->as_integer()->get();
  if (v < min || v > max) return Error(*node, key, absl::StrCat("must be in [", min, ", ", max, "], got ", v));
  *out = v;
  return absl::OkStatus();
}

absl::Status TomlTableReader::Seconds(std::string_view key, absl::Duration* out, double min, double max) {
  double seconds = absl::ToDoubleSeconds(*out);
  if (auto s = Double(key, &seconds, min, max); !s.ok()) return s;
  *out = absl::Seconds(seconds);
  return absl::OkStatus();
}

absl::Status TomlTableReader::Bool(std::string_view key, bool* out) {
  const toml::node* node = Find(key);
  if (node == nullptr) return absl::OkStatus();
  if (!node->is_boolean()) return Error(*node, key, "must be true or false");
  *out = node->as_boolean()->get();
  return absl::OkStatus();
}

absl::Status TomlTableReader::String(std::string_view key, std::string* out) {
  const toml::node* node = Find(key);
  if (node == nullptr) return absl::OkStatus();
  if (!node->is_string()) return Error(*node, key, "must be a string");
  if (node->as_string()->get().empty()) return Error(*node, key, "must not be empty");
  *out = node->as_string()->get();
  return absl::OkStatus();
}

absl::Status TomlTableReader::Choice(std::string_view key, const std::vector<std::string>& choices, int* out) {
  std::string value;
  if (auto s = String(key, &value); !s.ok() || value.empty()) return s;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (choices[i] == value) {
      *out = static_cast<int>(i);
      return absl::OkStatus();
    }
  }
  return Error(*Find(key), key, absl::StrCat("must be one of ", absl::StrJoin(choices, ", "), ", got '", value, "'"));
}

absl::StatusOr<const toml::table*> TomlTableReader::Table(std::string_view key) {
  const toml::node* node = Find(key);
  if (node == nullptr) return nullptr;
  if (!node->is_table()) return Error(*node, key, "must be a table ([section])");
  return node->as_table();
}

absl::Status TomlTableReader::RejectUnknown() const {
  for (const auto& [key, node] : table_) {
    if (!known_.contains(std::string(key.str()))) return Error(node, key.str(), "unknown key");
  }
  return absl::OkStatus();
}

absl::Status TomlTableReader::Error(const toml::node& node, std::string_view key, std::string_view problem) const {
  return absl::InvalidArgumentError(absl::StrCat(source_, ":", node.source().begin.line, ": ",
                                                 section_.empty() ? "" : section_ + ".", std::string(key), ": ",
                                                 std::string(problem)));
}

absl::Status TomlTableReader::Error(std::string_view problem) const {
  return absl::InvalidArgumentError(absl::StrCat(source_, ":", table_.source().begin.line, ": ",
                                                 section_.empty() ? "" : "[" + section_ + "] ", std::string(problem)));
}

const toml::node* TomlTableReader::Find(std::string_view key) {
  known_.insert(std::string(key));
  return table_.get(key);
}

}  // namespace tinyfed::aggregator
