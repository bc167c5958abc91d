// The five-client SecAgg+ round that secagg_fuzz drives and whose genuine
// messages write_fuzz_seeds records, so the seeds match what the target runs.
#ifndef TINYFED_FUZZ_SECAGG_COHORT_H_
#define TINYFED_FUZZ_SECAGG_COHORT_H_

#include <memory>
#include <vector>

#include "tinyfed/secure_agg/client.h"
#include "tinyfed/secure_agg/server.h"

namespace tinyfed::fuzz {

struct Cohort {
  std::unique_ptr<secagg::SecAggParams> params;
  std::vector<std::unique_ptr<secagg::Client>> clients;
  std::unique_ptr<secagg::Server> server;
};

inline Cohort MakeCohort() {
  secagg::SecAggConfig c;
  c.round_id = 9;
  c.num_clients = 5;
  c.bits = 12;
  c.vector_length = 3;
  Cohort cohort;
  cohort.params = std::make_unique<secagg::SecAggParams>(*secagg::SecAggParams::Create(c, 4, 3));
  for (uint32_t u = 0; u < 5; ++u) {
    std::array<uint8_t, 32> seed{};
    seed[0] = static_cast<uint8_t>(u);
    cohort.clients.push_back(*secagg::Client::Create(*cohort.params, u, {u, 2 * u, 100}, secagg::SeededRandom(seed)));
  }
  cohort.server = *secagg::Server::Create(*cohort.params, 3);
  return cohort;
}

}  // namespace tinyfed::fuzz

#endif  // TINYFED_FUZZ_SECAGG_COHORT_H_
