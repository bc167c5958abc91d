#include <fmt/format.h>

#include <exception>
#include <new>

#include "CLI/CLI.hpp"
#include "tinyfed/base/sodium.h"
#include "tools/commands.h"

namespace tinyfed::tools {

int RunTinyfed(int argc, char** argv, const TestingExtension* testing) {
  // Keys, signatures and noise all need libsodium: refuse to start without it.
  if (absl::Status sodium = tinyfed::base::InitSodium(); !sodium.ok()) {
    fmt::print(stderr, "tinyfed: error: {}\n", std::string(sodium.message()));
    return 1;
  }
  CLI::App app{"tinyfed: federated on-device learning for clinics"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tinyfed 0.1.0");
  AddAggregatorCommands(&app, testing);
  AddBackboneCommands(&app);
  AddModelCommands(&app);
  AddPrivacyCommands(&app);
  AddClientCommands(&app, testing);
  AddSimCommands(&app);
  if (testing && testing->add_flags) {
    testing->add_flags(app.get_subcommand("aggregator"), app.get_subcommand("client")->get_subcommand("run"));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const CommandError& e) {
    fmt::print(stderr, "tinyfed: error: {}\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "tinyfed: error: out of memory (a dataset too large for this machine? see --max-input-mb)\n");
    return 1;
  } catch (const std::exception& e) {
    // Nothing escapes as an abort: whatever a library threw becomes an error.
    fmt::print(stderr, "tinyfed: error: {}\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace tinyfed::tools
