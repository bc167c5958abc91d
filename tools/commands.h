// Subcommand registration for the `tinyfed` command. Each part adds its own
// subcommands; a failing command throws CommandError, which main() prints.
#ifndef TINYFED_TOOLS_COMMANDS_H_
#define TINYFED_TOOLS_COMMANDS_H_

#include <functional>
#include <stdexcept>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/client/client.h"

namespace tinyfed::tools {

class CommandError : public std::runtime_error {
 public:
  explicit CommandError(const absl::Status& status) : std::runtime_error(std::string(status.message())) {}
};

template <typename T>
T OrThrow(absl::StatusOr<T> v) {
  if (!v.ok()) throw CommandError(v.status());
  return std::move(*v);
}

// What the testing build of the command (tinyfed_testing, built with the
// tests, never installed) adds to `aggregator` and `client run`: flags of
// its own, and what they do to the engine and the client those start. The
// tinyfed command has none of it.
struct TestingExtension {
  std::function<void(CLI::App* aggregator, CLI::App* client_run)> add_flags;
  std::function<void(aggregator::RoundEngine& engine)> on_engine;
  // Before the client is made: it may chain hooks->on_phase.
  std::function<void(const std::string& device_id, client::ClientHooks* hooks)> on_client_hooks;
  std::function<void(const std::string& device_id, client::Client& client)> on_client;
};

void AddAggregatorCommands(CLI::App* app, const TestingExtension* testing);  // and enroll, device
void AddBackboneCommands(CLI::App* app);
void AddClientCommands(CLI::App* app, const TestingExtension* testing);
void AddModelCommands(CLI::App* app);
void AddPrivacyCommands(CLI::App* app);
void AddSimCommands(CLI::App* app);

// The whole command: parses `argv`, runs the subcommand, prints any error as
// "tinyfed: error: ..." and returns the exit code. `testing` is null but in
// tinyfed_testing.
int RunTinyfed(int argc, char** argv, const TestingExtension* testing);

}  // namespace tinyfed::tools

#endif  // TINYFED_TOOLS_COMMANDS_H_
