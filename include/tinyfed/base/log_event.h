// Log lines that operators filter on: an event name and the ids it concerns
// beside the sentence a person reads. The text format prints the sentence
// alone; the JSON format (`--log-format json`, tools/logging.h) prints one
// object per line: {"time", "level", "event", the ids..., "message"}.
//
//   LogEvent(spdlog::level::info, "round_done", {{"round", id}, {"model_version", v}},
//            fmt::format("round {} done: model v{} published", id, v));
//
// Lines logged with spdlog directly carry the event "log" and no ids.
#ifndef TINYFED_BASE_LOG_EVENT_H_
#define TINYFED_BASE_LOG_EVENT_H_

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include "spdlog/spdlog.h"

namespace tinyfed::base {

struct LogField {
  LogField(std::string_view k, int64_t v) : key(k), number(v), is_number(true) {}
  LogField(std::string_view k, uint64_t v) : LogField(k, static_cast<int64_t>(v)) {}
  LogField(std::string_view k, int v) : LogField(k, static_cast<int64_t>(v)) {}
  LogField(std::string_view k, std::string v) : key(k), text(std::move(v)) {}
  LogField(std::string_view k, const char* v) : key(k), text(v) {}

  std::string_view key;  // a literal: "round", "device", "model_version"
  std::string text;
  int64_t number = 0;
  bool is_number = false;
};

void LogEvent(spdlog::level::level_enum level, std::string_view event, std::initializer_list<LogField> ids,
              std::string_view message);

// The event and ids of the line being logged on this thread (a formatter
// runs in the logging thread), or nullptr outside LogEvent.
struct LogEventContext {
  std::string_view event;
  std::span<const LogField> ids;
};
const LogEventContext* CurrentLogEvent();

}  // namespace tinyfed::base

#endif  // TINYFED_BASE_LOG_EVENT_H_
