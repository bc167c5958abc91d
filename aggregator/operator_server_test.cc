// The operator port on loopback: metrics for anyone, the status page and
// its JSON only with the operator's token, nothing writable.
#include "tinyfed/aggregator/operator_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include "absl/strings/escaping.h"
#include "aggregator/testing/round_engine_fixture.h"
#include "nlohmann/json.hpp"
#include "tinyfed/base/file_io.h"

namespace tinyfed::aggregator {
namespace {

constexpr char kToken[] = "0123456789abcdef0123456789abcdef";

class OperatorServerTest : public testing::RoundEngineFixture {
 protected:
  void StartOperatorPort() {
    ASSERT_TRUE(base::WriteFileAtomically(dir_ / "operator.token", std::string(kToken) + "\n", 0600).ok());
    config_.operator_port.listen = "127.0.0.1:0";
    config_.operator_port.token_file = dir_ / "operator.token";
    Start();
    auto server = OperatorServer::Start(config_, &engine_->metrics());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    http_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  }
  void TearDown() override {
    server_.reset();
    RoundEngineFixture::TearDown();
  }
  std::unique_ptr<OperatorServer> server_;
  std::unique_ptr<httplib::Client> http_;
};

TEST_F(OperatorServerTest, MetricsNeedNoCredentialAndNameNoDevice) {
  StartOperatorPort();
  Admit(4);
  auto r = http_->Get("/metrics");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(r->body.find("tinyfed_round_cohort_size 4\n"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("tinyfed_population 4\n"), std::string::npos) << r->body;
  EXPECT_EQ(r->body.find("clinic-"), std::string::npos) << r->body;
}

TEST_F(OperatorServerTest, TheStatusPageNeedsTheOperatorsToken) {
  StartOperatorPort();
  Admit(4);
  auto anonymous = http_->Get("/");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  EXPECT_NE(anonymous->get_header_value("WWW-Authenticate").find("Basic"), std::string::npos);
  EXPECT_EQ(http_->Get("/", {{"Authorization", "Bearer wrong-token-wrong-token"}})->status, 401);
  EXPECT_EQ(http_->Get("/", {{"Authorization", "Basic " + absl::Base64Escape(std::string("admin:") + kToken)}})->status,
            401);

  auto bearer = http_->Get("/", {{"Authorization", std::string("Bearer ") + kToken}});
  ASSERT_TRUE(bearer);
  EXPECT_EQ(bearer->status, 200);
  EXPECT_EQ(bearer->get_header_value("Cache-Control"), "no-store");
  EXPECT_NE(bearer->body.find("clinic-3"), std::string::npos);
  auto basic =
      http_->Get("/status.json", {{"Authorization", "Basic " + absl::Base64Escape(std::string("operator:") + kToken)}});
  ASSERT_TRUE(basic);
  EXPECT_EQ(basic->status, 200);
  const nlohmann::json status = nlohmann::json::parse(basic->body);
  EXPECT_EQ(status["devices"].size(), 4u);
  EXPECT_EQ(status["rounds"][0]["state"], "running");
}

TEST_F(OperatorServerTest, ThePortIsReadOnly) {
  StartOperatorPort();
  const httplib::Headers auth = {{"Authorization", std::string("Bearer ") + kToken}};
  EXPECT_EQ(http_->Post("/", auth, "x", "text/plain")->status, 404);
  EXPECT_EQ(http_->Delete("/status.json", auth)->status, 404);
  auto unknown = http_->Get("/admin", auth);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_NE(unknown->body.find("/metrics, / and /status.json"), std::string::npos);
}

TEST_F(OperatorServerTest, AShortTokenIsRefusedAtStart) {
  ASSERT_TRUE(base::WriteFileAtomically(dir_ / "operator.token", "short\n", 0600).ok());
  config_.operator_port.listen = "127.0.0.1:0";
  config_.operator_port.token_file = dir_ / "operator.token";
  Start();
  auto server = OperatorServer::Start(config_, &engine_->metrics());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(server.status().message().find("needs at least 16"), std::string::npos) << server.status();
}

TEST_F(OperatorServerTest, WithoutATokenFileThePageIsOffButMetricsServe) {
  config_.operator_port.listen = "127.0.0.1:0";
  Start();
  auto server = OperatorServer::Start(config_, &engine_->metrics());
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client http("127.0.0.1", (*server)->port());
  EXPECT_EQ(http.Get("/metrics")->status, 200);
  auto page = http.Get("/");
  EXPECT_EQ(page->status, 404);
  EXPECT_NE(page->body.find("set operator.token_file"), std::string::npos);
}

}  // namespace
}  // namespace tinyfed::aggregator
