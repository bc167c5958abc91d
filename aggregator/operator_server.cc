#include "tinyfed/aggregator/operator_server.h"

#include <httplib.h>
#include <sodium.h>

#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "spdlog/spdlog.h"
#include "tinyfed/aggregator/status_page.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/sha256.h"
#include "tinyfed/base/sodium.h"
#include "tinyfed/base/status_macros.h"

namespace tinyfed::aggregator {
namespace {

using absl::StrCat;

constexpr size_t kMinTokenLength = 16;

// True if the request carries `token` (compared as SHA-256 digests in
// constant time, so that timing says nothing of it).
bool HasCredential(const httplib::Request& request, const std::string& token_sha256) {
  const std::string header = request.get_header_value("Authorization");
  std::string presented;
  if (absl::string_view rest = header; absl::ConsumePrefix(&rest, "Bearer ")) {
    presented = std::string(rest);
  } else if (absl::ConsumePrefix(&rest, "Basic ")) {
    std::string decoded;
    if (!absl::Base64Unescape(rest, &decoded)) return false;
    absl::string_view pair = decoded;
    if (!absl::ConsumePrefix(&pair, "operator:")) return false;
    presented = std::string(pair);
  } else {
    return false;
  }
  const std::string digest = base::Sha256(presented);
  return crypto_verify_32(reinterpret_cast<const unsigned char*>(digest.data()),
                          reinterpret_cast<const unsigned char*>(token_sha256.data())) == 0;
}

absl::StatusOr<std::string> ReadToken(const std::filesystem::path& file) {
  TINYFED_ASSIGN_OR_RETURN(std::string text, base::ReadFileBytes(file, 4096));
  const std::string token(absl::StripAsciiWhitespace(text));
  if (token.size() < kMinTokenLength) {
    return absl::InvalidArgumentError(StrCat("operator.token_file ", file.string(), " holds ", token.size(),
                                             " characters; the operator token needs at least ", kMinTokenLength,
                                             " (for example `openssl rand -hex 32`)"));
  }
  return token;
}

}  // namespace

struct OperatorServer::Impl {
  std::unique_ptr<httplib::Server> http;
  std::thread thread;
  int port = 0;
  absl::Mutex mu;  // the reader's database connections, one request at a time
  std::unique_ptr<StatusReader> reader ABSL_GUARDED_BY(mu);
  std::string token_sha256;  // empty: no status page
};

OperatorServer::OperatorServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OperatorServer::~OperatorServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<OperatorServer>> OperatorServer::Start(const Config& config, Metrics* metrics) {
  TINYFED_RETURN_IF_ERROR(base::InitSodium());
  const std::string& listen = config.operator_port.listen;
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(StrCat("operator.listen '", listen, "' is not host:port"));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);

  auto impl = std::make_unique<Impl>();
  if (!config.operator_port.token_file.empty()) {
    TINYFED_ASSIGN_OR_RETURN(std::string token, ReadToken(config.operator_port.token_file));
    impl->token_sha256 = base::Sha256(token);
    absl::MutexLock lock(&impl->mu);
    TINYFED_ASSIGN_OR_RETURN(impl->reader, StatusReader::Open(config));
  }
  const SecurityConfig& security = config.security;
  if (security.tls_certificate.empty()) {
    impl->http = std::make_unique<httplib::Server>();
  } else {
    auto tls = std::make_unique<httplib::SSLServer>(security.tls_certificate.c_str(), security.tls_private_key.c_str());
    if (!tls->is_valid()) {
      return absl::InvalidArgumentError(StrCat("operator port: cannot use the TLS certificate ",
                                               security.tls_certificate.string(), " and key ",
                                               security.tls_private_key.string()));
    }
    impl->http = std::move(tls);
  }
  httplib::Server& http = *impl->http;
  // A read-only page for a few operators and a scrape every few seconds.
  http.new_task_queue = [] { return new httplib::ThreadPool(2); };
  http.set_payload_max_length(4096);
  http.set_read_timeout(5, 0);
  http.set_write_timeout(5, 0);
  http.set_keep_alive_max_count(20);

  http.Get("/metrics", [metrics](const httplib::Request&, httplib::Response& response) {
    response.set_content(metrics->Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  Impl* raw = impl.get();
  auto status_handler = [raw](bool json) {
    return [raw, json](const httplib::Request& request, httplib::Response& response) {
      if (raw->token_sha256.empty()) {
        response.status = 404;
        response.set_content("the status page is off: set operator.token_file in the aggregator's config\n",
                             "text/plain");
        return;
      }
      if (!HasCredential(request, raw->token_sha256)) {
        response.status = 401;
        response.set_header("WWW-Authenticate", "Basic realm=\"tinyfed operator\", charset=\"UTF-8\"");
        response.set_content("the operator's credential is needed: user 'operator', the token of operator.token_file\n",
                             "text/plain");
        return;
      }
      absl::StatusOr<FederationStatus> status;
      {
        absl::MutexLock lock(&raw->mu);
        status = raw->reader->Read(absl::Now());
      }
      if (!status.ok()) {
        spdlog::error("status page: {}", status.status().ToString());
        response.status = 503;
        response.set_content(StrCat("cannot read the state: ", status.status().message(), "\n"), "text/plain");
        return;
      }
      // Device ids: never cached by a proxy or the browser.
      response.set_header("Cache-Control", "no-store");
      response.set_header("X-Content-Type-Options", "nosniff");
      if (json) {
        response.set_content(StatusJson(*status), "application/json");
      } else {
        response.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
        response.set_content(StatusPageHtml(*status), "text/html; charset=utf-8");
      }
    };
  };
  http.Get("/", status_handler(false));
  http.Get("/status.json", status_handler(true));
  http.set_error_handler([](const httplib::Request&, httplib::Response& response) {
    if (response.status == 404 && response.body.empty()) {
      response.set_content("not found: the operator port serves /metrics, / and /status.json\n", "text/plain");
    }
  });

  impl->port = port == 0 ? http.bind_to_any_port(host) : (http.bind_to_port(host, port) ? port : -1);
  if (impl->port <= 0) return absl::UnavailableError(StrCat("operator port: cannot listen on ", listen));
  impl->thread = std::thread([raw] { raw->http->listen_after_bind(); });
  spdlog::info("operator port on {}:{} ({}): /metrics{}", host, impl->port,
               security.tls_certificate.empty() ? "HTTP" : "HTTPS",
               impl->token_sha256.empty() ? "; status page off (no operator.token_file)" : ", status page at /");
  return std::unique_ptr<OperatorServer>(new OperatorServer(std::move(impl)));
}

int OperatorServer::port() const { return impl_->port; }

void OperatorServer::Shutdown() {
  if (!impl_ || !impl_->thread.joinable()) return;
  impl_->http->stop();
  impl_->thread.join();
}

}  // namespace tinyfed::aggregator
