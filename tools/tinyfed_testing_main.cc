// tinyfed_testing: the tinyfed command plus what only tests may ask of it
// (built with the tests, never installed):
//   aggregator --record-dir DIR   each SecAgg+ round's secure sum and its
//                                 survivors, as DIR/round-N.sum, .survivors
//   client run --record-dir DIR   each encoded update in the clear, as
//                                 DIR/round-N-DEVICE.encoded
//   client run --exit-at R:PHASE  SIGKILL itself at that phase of round R
//                                 (a power cut: nothing flushed)
#include <signal.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "aggregator/testing/round_engine_peer.h"
#include "client/testing/client_peer.h"
#include "tinyfed/base/file_io.h"
#include "tools/commands.h"

namespace {

using tinyfed::tools::CommandError;

struct Flags {
  std::string aggregator_record_dir;
  std::string client_record_dir;
  std::string exit_at;
};

tinyfed::v1::Phase ParsePhase(const std::string& name) {
  for (int p = tinyfed::v1::Phase_MIN; p <= tinyfed::v1::Phase_MAX; ++p) {
    std::string lower = tinyfed::v1::Phase_Name(static_cast<tinyfed::v1::Phase>(p)).substr(6);  // after "PHASE_"
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower == name) return static_cast<tinyfed::v1::Phase>(p);
  }
  throw CommandError(absl::InvalidArgumentError(absl::StrCat(
      "--exit-at: unknown phase '", name, "' (task, advertise_keys, share_keys, masked_input, unmasking, result)")));
}

void Write(const std::filesystem::path& file, std::string_view bytes) {
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  if (absl::Status s = tinyfed::base::WriteFileAtomically(file, bytes); !s.ok()) {
    fprintf(stderr, "tinyfed_testing: %s\n", std::string(s.message()).c_str());
  }
}

std::string_view Bytes(std::span<const uint32_t> words) {
  return {reinterpret_cast<const char*>(words.data()), words.size() * sizeof(uint32_t)};
}

}  // namespace

int main(int argc, char** argv) {
  auto flags = std::make_shared<Flags>();
  tinyfed::tools::TestingExtension testing;
  testing.add_flags = [flags](CLI::App* aggregator, CLI::App* client_run) {
    aggregator->add_option("--record-dir", flags->aggregator_record_dir, "write each round's secure sum here");
    client_run->add_option("--record-dir", flags->client_record_dir, "write each encoded update here");
    client_run->add_option("--exit-at", flags->exit_at, "SIGKILL itself at ROUND:PHASE (a power cut)");
  };
  testing.on_engine = [flags](tinyfed::aggregator::RoundEngine& engine) {
    if (flags->aggregator_record_dir.empty()) return;
    const std::filesystem::path dir = flags->aggregator_record_dir;
    tinyfed::aggregator::testing::RoundEnginePeer::ObserveSecureSums(
        engine, [dir](int64_t round, std::span<const uint32_t> sum, const std::vector<std::string>& survivors) {
          std::string names;
          for (const std::string& d : survivors) absl::StrAppend(&names, d, "\n");
          Write(dir / absl::StrCat("round-", round, ".survivors"), names);
          Write(dir / absl::StrCat("round-", round, ".sum"), Bytes(sum));
        });
  };
  testing.on_client_hooks = [flags](const std::string&, tinyfed::client::ClientHooks* hooks) {
    if (flags->exit_at.empty()) return;
    const std::vector<std::string> parts = absl::StrSplit(flags->exit_at, ':');
    uint64_t round = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &round)) {
      throw CommandError(absl::InvalidArgumentError("--exit-at wants ROUND:PHASE, e.g. 3:share_keys"));
    }
    const tinyfed::v1::Phase phase = ParsePhase(parts[1]);
    hooks->on_phase = [round, phase, inner = hooks->on_phase](uint64_t r, tinyfed::v1::Phase p) {
      if (r == round && p == phase) raise(SIGKILL);
      return !inner || inner(r, p);
    };
  };
  testing.on_client = [flags](const std::string& device, tinyfed::client::Client& client) {
    if (flags->client_record_dir.empty()) return;
    const std::filesystem::path dir = flags->client_record_dir;
    tinyfed::client::testing::ClientPeer::ObserveEncodedUpdates(
        client, [dir, device](uint64_t round, std::span<const uint32_t> encoded) {
          Write(dir / absl::StrCat("round-", round, "-", device, ".encoded"), Bytes(encoded));
        });
  };
  return tinyfed::tools::RunTinyfed(argc, argv, &testing);
}
