// How the long-running commands (`tinyfed aggregator`, `tinyfed client run`)
// log, on stderr as journald and log shippers expect: `text` is one line per
// event with an ISO-8601 UTC timestamp; `json` is one object per line,
// {"time", "level", "event", ids..., "message"} (base/log_event.h). Control
// characters in a message never reach the terminal or start a new line.
#ifndef TINYFED_TOOLS_LOGGING_H_
#define TINYFED_TOOLS_LOGGING_H_

#include <string>

#include "CLI/CLI.hpp"

namespace tinyfed::tools {

enum class LogFormat { kText, kJson };

// Adds --log-format text|json to `command`.
void AddLogFormatFlag(CLI::App* command, LogFormat* format);
void SetUpLogging(LogFormat format);

}  // namespace tinyfed::tools

#endif  // TINYFED_TOOLS_LOGGING_H_
