// SecAgg+ cost: every client and the server run in one process; the time of
// each side is measured separately (manual timing). Arguments: n clients,
// vector length m, dropout phase (3 = 10% drop before sending their masked
// input, so the server must rebuild their pairwise masks; 4 = 10% drop after
// it, before unmasking). 16-bit coordinates, k and t chosen by the library.
// Counters: client_ms (median over clients, all four rounds), server_ms (all
// four rounds, including the final unmasking), upload_expansion (a client's
// bytes sent / the raw m * b / 8), degree k and threshold t.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>

#include "tinyfed/secure_agg/client.h"
#include "tinyfed/secure_agg/server.h"

namespace tinyfed::secagg {
namespace {

using Clock = std::chrono::steady_clock;

void BM_SecAgg(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const auto m = static_cast<size_t>(state.range(1));
  const int drop_phase = static_cast<int>(state.range(2));
  SecAggConfig c;
  c.round_id = 1;
  c.num_clients = n;
  c.bits = 16;
  c.vector_length = m;
  c.max_dropout = 0.1;
  auto params = ChooseParams(c);
  if (!params.ok()) std::abort();
  double client_ms = 0, server_ms = 0, expansion = 0;
  for (auto _ : state) {
    std::vector<std::unique_ptr<Client>> clients;
    std::vector<double> client_seconds(static_cast<size_t>(n), 0.0);
    std::vector<size_t> upload(static_cast<size_t>(n), 0);
    for (int u = 0; u < n; ++u) {
      std::vector<uint32_t> input(m, static_cast<uint32_t>(u) & 0xffff);
      clients.push_back(*Client::Create(*params, static_cast<uint32_t>(u), std::move(input), OsRandom()));
    }
    auto server = *Server::Create(*params, params->threshold());
    double server_seconds = 0.0;
    auto timed = [](double* acc, auto&& f) {
      const auto start = Clock::now();
      auto r = f();
      *acc += std::chrono::duration<double>(Clock::now() - start).count();
      return r;
    };
    auto deliver = [&](const v1::SecAggClientMessage& msg) {
      upload[msg.sender()] += msg.ByteSizeLong();
      timed(&server_seconds, [&] { return server->Receive(msg); }).IgnoreError();
    };
    for (int u = 0; u < n; ++u) {
      deliver(*timed(&client_seconds[static_cast<size_t>(u)],
                     [&] { return clients[static_cast<size_t>(u)]->AdvertiseKeys(); }));
    }
    for (int phase = 2; phase <= 4; ++phase) {
      auto requests = *timed(&server_seconds, [&] { return server->AdvancePhase(); });
      for (const auto& req : requests) {
        const uint32_t u = req.recipient();
        if (phase == drop_phase && u % 10 == 0) continue;  // 10% drop here
        auto reply = timed(&client_seconds[u], [&] { return clients[u]->Handle(req); });
        if (reply.ok()) deliver(*reply);
      }
    }
    auto done = timed(&server_seconds, [&] { return server->AdvancePhase(); });
    if (!done.ok()) state.SkipWithError(std::string(done.status().message()).c_str());
    std::sort(client_seconds.begin(), client_seconds.end());
    client_ms = 1e3 * client_seconds[client_seconds.size() / 2];
    server_ms = 1e3 * server_seconds;
    std::sort(upload.begin(), upload.end());
    expansion = static_cast<double>(upload[upload.size() / 2]) / (static_cast<double>(m) * c.bits / 8.0);
    state.SetIterationTime(server_seconds);
  }
  state.counters["client_ms"] = client_ms;
  state.counters["server_ms"] = server_ms;
  state.counters["upload_expansion"] = expansion;
  state.counters["k"] = params->degree();
  state.counters["t"] = params->threshold();
}

BENCHMARK(BM_SecAgg)
    ->Args({100, 100000, 4})
    ->Args({100, 100000, 3})
    ->Args({1000, 100000, 4})
    ->Args({1000, 100000, 3})
    ->Args({100, 10000, 4})
    ->Args({300, 10000, 3})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tinyfed::secagg

BENCHMARK_MAIN();
