// The signals long-running commands answer: SIGINT and SIGTERM ask them to
// stop (the aggregator drains first), SIGHUP asks the aggregator to reload
// what can change without a restart. Handlers only set flags; the command's
// main loop reads them.
#ifndef TINYFED_TOOLS_STOP_SIGNALS_H_
#define TINYFED_TOOLS_STOP_SIGNALS_H_

namespace tinyfed::tools {

void InstallSignalHandlers();
bool StopRequested();
void RequestStop();
// True once per SIGHUP received since the last call.
bool TakeReloadRequest();

}  // namespace tinyfed::tools

#endif  // TINYFED_TOOLS_STOP_SIGNALS_H_
