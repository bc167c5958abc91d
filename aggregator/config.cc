#include "tinyfed/aggregator/config.h"

#include <cmath>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tinyfed/models/file_io.h"
#include "toml++/toml.h"

namespace tinyfed::aggregator {
namespace {

// Reads one TOML table, remembering which keys were asked for so that the
// rest can be reported as unknown.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string section, std::string source)
      : table_(table), section_(std::move(section)), source_(std::move(source)) {}

  absl::Status Double(std::string_view key, double* out, double min, double max) {
    const toml::node* node = Find(key);
    if (node == nullptr) return absl::OkStatus();
    std::optional<double> v = node->value<double>();  // integers convert too
    if (!v) return Error(*node, key, "must be a number");
    if (!std::isfinite(*v) || *v < min || *v > max) {
      return Error(*node, key, absl::StrCat("must be in [", min, ", ", max, "], got ", *v));
    }
    *out = *v;
    return absl::OkStatus();
  }
  template <typename Int>
  absl::Status Integer(std::string_view key, Int* out, int64_t min, int64_t max) {
    const toml::node* node = Find(key);
    if (node == nullptr) return absl::OkStatus();
    if (!node->is_integer()) return Error(*node, key, "must be an integer");
    const int64_t v = node->as_integer()->get();
    if (v < min || v > max) return Error(*node, key, absl::StrCat("must be in [", min, ", ", max, "], got ", v));
    *out = static_cast<Int>(v);
    return absl::OkStatus();
  }
  absl::Status Seconds(std::string_view key, absl::Duration* out, double min, double max) {
    double seconds = absl::ToDoubleSeconds(*out);
    if (auto s = Double(key, &seconds, min, max); !s.ok()) return s;
    *out = absl::Seconds(seconds);
    return absl::OkStatus();
  }
  absl::Status Bool(std::string_view key, bool* out) {
    const toml::node* node = Find(key);
    if (node == nullptr) return absl::OkStatus();
    if (!node->is_boolean()) return Error(*node, key, "must be true or false");
    *out = node->as_boolean()->get();
    return absl::OkStatus();
  }
  absl::Status String(std::string_view key, std::string* out) {
    const toml::node* node = Find(key);
    if (node == nullptr) return absl::OkStatus();
    if (!node->is_string()) return Error(*node, key, "must be a string");
    *out = node->as_string()->get();
    if (out->empty()) return Error(*node, key, "must not be empty");
    return absl::OkStatus();
  }
  // One of `choices`; returns its index in *out.
  absl::Status Choice(std::string_view key, const std::vector<std::string>& choices, int* out) {
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
  // The sub-table `key` (empty when absent); an error if it is not a table.
  absl::StatusOr<const toml::table*> Table(std::string_view key) {
    const toml::node* node = Find(key);
    if (node == nullptr) return nullptr;
    if (!node->is_table()) return Error(*node, key, "must be a table ([section])");
    return node->as_table();
  }
  absl::Status RejectUnknown() const {
    for (const auto& [key, node] : table_) {
      if (!known_.contains(std::string(key.str()))) {
        return Error(node, key.str(), "unknown key");
      }
    }
    return absl::OkStatus();
  }
  absl::Status Error(const toml::node& node, std::string_view key, std::string_view problem) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ":", node.source().begin.line, ": ",
                                                   section_.empty() ? "" : section_ + ".", std::string(key), ": ",
                                                   std::string(problem)));
  }

 private:
  const toml::node* Find(std::string_view key) {
    known_.insert(std::string(key));
    return table_.get(key);
  }
  const toml::table& table_;
  std::string section_;
  std::string source_;
  std::set<std::string> known_;
};

#define TINYFED_RETURN_IF_ERROR(expr)      \
  do {                                     \
    if (auto _s = (expr); !_s.ok()) return _s; \
  } while (0)

absl::Status ReadTop(TableReader& r, const std::filesystem::path& base, Config& c) {
  std::string state_dir, model, key;
  TINYFED_RETURN_IF_ERROR(r.String("listen", &c.listen));
  TINYFED_RETURN_IF_ERROR(r.String("state_dir", &state_dir));
  TINYFED_RETURN_IF_ERROR(r.String("initial_model", &model));
  TINYFED_RETURN_IF_ERROR(r.String("signing_key", &key));
  for (auto [name, value, out] : {std::tuple{"state_dir", &state_dir, &c.state_dir},
                                  std::tuple{"initial_model", &model, &c.initial_model},
                                  std::tuple{"signing_key", &key, &c.signing_key}}) {
    if (value->empty()) return absl::InvalidArgumentError(absl::StrCat("missing required key '", name, "'"));
    *out = base / *value;
  }
  return absl::OkStatus();
}

absl::Status ReadRounds(TableReader& r, Config& c) {
  TINYFED_RETURN_IF_ERROR(r.Integer("max_rounds", &c.max_rounds, 0, int64_t{1} << 40));
  TINYFED_RETURN_IF_ERROR(r.Integer("cohort_size", &c.cohort_size, 2, 100000));
  TINYFED_RETURN_IF_ERROR(r.Integer("min_cohort", &c.min_cohort, 2, 100000));
  TINYFED_RETURN_IF_ERROR(r.Double("over_selection", &c.over_selection, 0.0, 4.0));
  TINYFED_RETURN_IF_ERROR(r.Bool("reset_head", &c.reset_head));
  double poll_ms = absl::ToDoubleMilliseconds(c.poll_interval);
  TINYFED_RETURN_IF_ERROR(r.Double("poll_interval_ms", &poll_ms, 10, 60000));
  c.poll_interval = absl::Milliseconds(poll_ms);
  return absl::OkStatus();
}

absl::Status ReadDeadlines(TableReader& r, Config& c) {
  TINYFED_RETURN_IF_ERROR(r.Seconds("selection", &c.selection_timeout, 0.1, 86400));
  TINYFED_RETURN_IF_ERROR(r.Seconds("training", &c.training_timeout, 0.1, 86400));
  TINYFED_RETURN_IF_ERROR(r.Seconds("share_keys", &c.share_keys_timeout, 0.1, 86400));
  TINYFED_RETURN_IF_ERROR(r.Seconds("masked_input", &c.masked_input_timeout, 0.1, 86400));
  return r.Seconds("unmasking", &c.unmasking_timeout, 0.1, 86400);
}

absl::Status ReadTraining(TableReader& r, Config& c) {
  auto& t = c.training;
  uint32_t epochs = t.epochs(), batch = t.batch_size();
  double lr = t.learning_rate(), momentum = t.momentum(), decay = t.weight_decay();
  TINYFED_RETURN_IF_ERROR(r.Integer("epochs", &epochs, 1, 1000));
  TINYFED_RETURN_IF_ERROR(r.Integer("batch_size", &batch, 1, 65536));
  TINYFED_RETURN_IF_ERROR(r.Double("learning_rate", &lr, 1e-9, 100));
  TINYFED_RETURN_IF_ERROR(r.Double("momentum", &momentum, 0, 0.999));
  TINYFED_RETURN_IF_ERROR(r.Double("weight_decay", &decay, 0, 1));
  t.set_epochs(epochs);
  t.set_batch_size(batch);
  t.set_learning_rate(static_cast<float>(lr));
  t.set_momentum(static_cast<float>(momentum));
  t.set_weight_decay(static_cast<float>(decay));
  return absl::OkStatus();
}

absl::Status ReadDp(TableReader& r, Config& c) {
  auto& d = c.dp;
  int mode = 0;
  TINYFED_RETURN_IF_ERROR(r.Choice("mode", {"distributed", "local"}, &mode));
  d.mode = static_cast<DpMode>(mode);
  TINYFED_RETURN_IF_ERROR(r.Double("clip", &d.clip, 1e-9, 1e9));
  TINYFED_RETURN_IF_ERROR(r.Double("noise_multiplier", &d.noise_multiplier, 0, 1e4));
  TINYFED_RETURN_IF_ERROR(r.Double("target_epsilon", &d.target_epsilon, 0, 1e4));
  TINYFED_RETURN_IF_ERROR(r.Double("delta", &d.delta, 1e-300, 0.999999));
  TINYFED_RETURN_IF_ERROR(r.Double("epsilon_budget", &d.epsilon_budget, 1e-9, 1e9));
  TINYFED_RETURN_IF_ERROR(r.Integer("bits", &d.bits, 2, 32));
  return r.Double("max_wrap_probability", &d.max_wrap_probability, 1e-300, 0.5);
}

absl::Status ReadSecAgg(TableReader& r, Config& c) {
  TINYFED_RETURN_IF_ERROR(r.Double("max_dropout", &c.max_dropout, 0.0, 0.9));
  return r.Double("max_corrupted", &c.max_corrupted, 0.0, 0.9);
}

absl::Status ReadOptimizer(TableReader& r, Config& c) {
  int kind = 0;
  TINYFED_RETURN_IF_ERROR(r.Choice("kind", {"fedavg", "fedavgm", "fedadam", "fedyogi"}, &kind));
  c.optimizer.kind = static_cast<ServerOptimizerKind>(kind);
  TINYFED_RETURN_IF_ERROR(r.Double("learning_rate", &c.optimizer.learning_rate, 1e-9, 1e3));
  TINYFED_RETURN_IF_ERROR(r.Double("beta1", &c.optimizer.beta1, 0, 0.999999));
  TINYFED_RETURN_IF_ERROR(r.Double("beta2", &c.optimizer.beta2, 0, 0.999999));
  return r.Double("tau", &c.optimizer.tau, 1e-12, 1e3);
}

absl::Status CheckConsistency(const Config& c, const std::string& source) {
  auto error = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
  };
  if (c.min_cohort > c.cohort_size) {
    return error(absl::StrCat("rounds.min_cohort (", c.min_cohort, ") exceeds rounds.cohort_size (", c.cohort_size, ")"));
  }
  if ((c.dp.noise_multiplier > 0) == (c.dp.target_epsilon > 0)) {
    return error("set exactly one of dp.noise_multiplier and dp.target_epsilon");
  }
  if (c.dp.target_epsilon > 0 && c.max_rounds == 0) {
    return error("dp.target_epsilon needs rounds.max_rounds: the target is spread over a known number of rounds");
  }
  return absl::OkStatus();
}

}  // namespace

Config DefaultConfig() {
  Config c;
  c.training.set_epochs(5);
  c.training.set_batch_size(32);
  c.training.set_learning_rate(0.05f);
  c.training.set_momentum(0.9f);
  c.training.set_weight_decay(0.0f);
  c.dp.noise_multiplier = 1.0;
  return c;
}

absl::StatusOr<Config> ParseConfig(std::string_view text, const std::filesystem::path& source_name) {
  const std::string source = source_name.string();
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", e.source().begin.line, ": ", std::string(e.description())));
  }
  Config c = DefaultConfig();
  bool dp_noise_given = false;
  TableReader top(root, "", source);
  TINYFED_RETURN_IF_ERROR(ReadTop(top, source_name.parent_path(), c));
  using Section = absl::Status (*)(TableReader&, Config&);
  const std::pair<const char*, Section> sections[] = {
      {"rounds", ReadRounds},       {"deadlines", ReadDeadlines}, {"training", ReadTraining}, {"dp", ReadDp},
      {"secagg", ReadSecAgg},       {"optimizer", ReadOptimizer},
  };
  for (const auto& [name, read] : sections) {
    auto table = top.Table(name);
    if (!table.ok()) return table.status();
    if (*table == nullptr) continue;
    if (std::string_view(name) == "dp") {
      dp_noise_given = (*table)->contains("noise_multiplier") || (*table)->contains("target_epsilon");
      if (dp_noise_given) c.dp.noise_multiplier = 0.0;  // the file's choice replaces the default
    }
    TableReader reader(**table, name, source);
    TINYFED_RETURN_IF_ERROR(read(reader, c));
    TINYFED_RETURN_IF_ERROR(reader.RejectUnknown());
  }
  auto testing = top.Table("testing");
  if (!testing.ok()) return testing.status();
  if (*testing != nullptr) {
    TableReader reader(**testing, "testing", source);
    std::string record_dir;
    TINYFED_RETURN_IF_ERROR(reader.String("record_dir", &record_dir));
    if (!record_dir.empty()) c.record_dir = source_name.parent_path() / record_dir;
    TINYFED_RETURN_IF_ERROR(reader.RejectUnknown());
  }
  TINYFED_RETURN_IF_ERROR(top.RejectUnknown());
  TINYFED_RETURN_IF_ERROR(CheckConsistency(c, source));
  return c;
}

absl::StatusOr<Config> ReadConfig(const std::filesystem::path& path) {
  auto text = models::ReadFileBytes(path, 1 << 20);
  if (!text.ok()) return text.status();
  return ParseConfig(*text, path);
}

}  // namespace tinyfed::aggregator
