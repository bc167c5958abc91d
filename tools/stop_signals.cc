#include "tools/stop_signals.h"

#include <signal.h>

#include <atomic>

namespace tinyfed::tools {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
extern "C" void OnStop(int) { g_stop.store(true); }
extern "C" void OnHangUp(int) { g_reload.store(true); }

}  // namespace

void InstallSignalHandlers() {
  struct sigaction action {};
  sigemptyset(&action.sa_mask);
  action.sa_handler = OnStop;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  action.sa_handler = OnHangUp;
  sigaction(SIGHUP, &action, nullptr);
}

bool StopRequested() { return g_stop.load(); }
void RequestStop() { g_stop.store(true); }
bool TakeReloadRequest() { return g_reload.exchange(false); }

}  // namespace tinyfed::tools
