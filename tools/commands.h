// Subcommand registration for the `tinyfed` command. Each part adds its own
// subcommands; a failing command throws CommandError, which main() prints.
#ifndef TINYFED_TOOLS_COMMANDS_H_
#define TINYFED_TOOLS_COMMANDS_H_

#include <stdexcept>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"

namespace tinyfed::tools {

class CommandError : public std::runtime_error {
 public:
  explicit CommandError(const absl::Status& status) : std::runtime_error(std::string(status.message())) {}
};

void AddModelCommands(CLI::App* app);
void AddPrivacyCommands(CLI::App* app);
void AddRoundCommands(CLI::App* app);
void AddSimCommands(CLI::App* app);

}  // namespace tinyfed::tools

#endif  // TINYFED_TOOLS_COMMANDS_H_
