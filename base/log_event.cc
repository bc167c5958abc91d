#include "tinyfed/base/log_event.h"

namespace tinyfed::base {
namespace {
thread_local const LogEventContext* current = nullptr;
}  // namespace

void LogEvent(spdlog::level::level_enum level, std::string_view event, std::initializer_list<LogField> ids,
              std::string_view message) {
  const LogEventContext context{.event = event, .ids = std::span(ids.begin(), ids.size())};
  current = &context;
  spdlog::log(level, "{}", message);
  current = nullptr;
}

const LogEventContext* CurrentLogEvent() { return current; }

}  // namespace tinyfed::base
