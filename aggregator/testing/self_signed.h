// A self-signed TLS certificate for tests (127.0.0.1 and localhost), made by
// openssl(1) as an operator would make one for a trial deployment.
#ifndef TINYFED_AGGREGATOR_TESTING_SELF_SIGNED_H_
#define TINYFED_AGGREGATOR_TESTING_SELF_SIGNED_H_

#include <cstdlib>
#include <filesystem>
#include <string>

namespace tinyfed::aggregator::testing {

// False if openssl failed; its output is in `dir`/openssl.log.
inline bool WriteSelfSignedCertificate(const std::filesystem::path& dir, const std::filesystem::path& certificate,
                                       const std::filesystem::path& private_key) {
  const std::string command =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=tinyfed-test "
      "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout '" +
      private_key.string() + "' -out '" + certificate.string() + "' > '" + (dir / "openssl.log").string() + "' 2>&1";
  return std::system(command.c_str()) == 0;
}

}  // namespace tinyfed::aggregator::testing

#endif  // TINYFED_AGGREGATOR_TESTING_SELF_SIGNED_H_
