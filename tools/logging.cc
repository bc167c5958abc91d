#include "tools/logging.h"

#include <map>

#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "spdlog/pattern_formatter.h"
#include "spdlog/spdlog.h"
#include "tinyfed/base/log_event.h"

namespace tinyfed::tools {
namespace {

// The message with control characters escaped: whatever reached a log line
// (text from a device, a path, an error from a library) cannot start
// another line or drive the operator's terminal. Device text is escaped
// where it is logged too; this holds for everything else.
class EscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    static constexpr char kHex[] = "0123456789abcdef";
    for (char c : msg.payload) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f) {
        const char escaped[4] = {'\\', 'x', kHex[u >> 4], kHex[u & 15]};
        dest.append(escaped, escaped + 4);
      } else {
        dest.push_back(c);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<EscapedMessage>(); }
};

// One JSON object per line; the JSON encoding escapes control characters.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    nlohmann::ordered_json line;
    line["time"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromChrono(msg.time), absl::UTCTimeZone());
    const auto level = spdlog::level::to_string_view(msg.level);
    line["level"] = std::string(level.data(), level.size());
    const base::LogEventContext* event = base::CurrentLogEvent();
    line["event"] = event ? std::string(event->event) : "log";
    if (event) {
      for (const base::LogField& f : event->ids) {
        if (f.is_number) {
          line[std::string(f.key)] = f.number;
        } else {
          line[std::string(f.key)] = f.text;
        }
      }
    }
    line["message"] = std::string(msg.payload.data(), msg.payload.size());
    const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

}  // namespace

void AddLogFormatFlag(CLI::App* command, LogFormat* format) {
  command->add_option("--log-format", *format, "text (one line per event, UTC) or json (one object per line)")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, LogFormat>{{"text", LogFormat::kText}, {"json", LogFormat::kJson}}, CLI::ignore_case));
}

void SetUpLogging(LogFormat format) {
  if (format == LogFormat::kJson) {
    spdlog::set_formatter(std::make_unique<JsonFormatter>());
    return;
  }
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<EscapedMessage>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %*");
  spdlog::set_formatter(std::move(formatter));
}

}  // namespace tinyfed::tools
