// The `tinyfed` command: thin subcommands over the libraries.
#include <fmt/format.h>

#include "CLI/CLI.hpp"
#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"tinyfed: federated on-device learning for clinics"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tinyfed 0.1.0");
  tinyfed::tools::AddModelCommands(&app);
  tinyfed::tools::AddPrivacyCommands(&app);
  tinyfed::tools::AddRoundCommands(&app);
  tinyfed::tools::AddSimCommands(&app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const tinyfed::tools::CommandError& e) {
    fmt::print(stderr, "tinyfed: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
