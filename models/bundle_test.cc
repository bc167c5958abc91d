// The loader must turn every corrupted, truncated or hostile bundle into a
// clear error, and anything it accepts must run safely. Runs under ASan and
// UBSan in `make test`.
#include "tinyfed/models/bundle.h"

#include <sodium.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <random>

#include "google/protobuf/stubs/logging.h"
#include "gtest/gtest.h"
#include "models/testing/random_bundle.h"
#include "tinyfed/models/interpreter.h"

namespace tinyfed::models {
namespace {

using testing::ConvSpec;

v1::ModelBundle ValidBundle() {
  std::mt19937 rng(5);
  v1::ModelBundle b;
  v1::Graph* g = b.mutable_backbone();
  auto* t = g->add_tensors();
  t->mutable_shape()->set_height(10);
  t->mutable_shape()->set_width(9);
  t->mutable_shape()->set_channels(3);
  t->set_scale(0.02f);
  t->set_zero_point(-3);
  g->set_input(0);
  ConvSpec s;
  s.out_c = 8;
  s.stride_h = 2;
  s.activation = v1::ACTIVATION_RELU;
  int x = testing::AppendRandomOp(&b, v1::Op::kConv2D, 0, s, rng);
  s.stride_h = 1;
  x = testing::AppendRandomOp(&b, v1::Op::kDepthwiseConv2D, x, s, rng);
  x = testing::AppendRandomOp(&b, v1::Op::kAdd, x, s, rng);
  s.kernel_h = s.kernel_w = s.stride_h = s.stride_w = 2;
  s.padding = v1::PADDING_VALID;
  x = testing::AppendRandomOp(&b, v1::Op::kMaxPool, x, s, rng);
  x = testing::AppendRandomOp(&b, v1::Op::kAveragePool, x, s, rng);
  x = testing::AppendRandomOp(&b, v1::Op::kReshape, x, s, rng);
  s.out_c = 12;
  x = testing::AppendRandomOp(&b, v1::Op::kFullyConnected, x, s, rng);
  testing::FinishBundle(&b, 3, rng);
  return b;
}

// What the loader did with one mutant.
enum class Outcome { kRejected, kAcceptedAndRan };

Outcome LoadAndRun(std::string_view file, const std::string& what) {
  auto bundle = DecodeBundleFile(file);
  if (!bundle.ok()) {
    EXPECT_EQ(bundle.status().code(), absl::StatusCode::kInvalidArgument) << what;
    EXPECT_FALSE(bundle.status().message().empty()) << what;
    return Outcome::kRejected;
  }
  auto interpreter = Interpreter::Create(*bundle, KernelSet::kReference);
  EXPECT_TRUE(interpreter.ok()) << what << ": accepted by the loader but not by Create: " << interpreter.status();
  if (interpreter.ok()) {
    std::vector<float> features((*interpreter)->input_size(), 0.5f);
    (*interpreter)->Predict(features);
  }
  return Outcome::kAcceptedAndRan;
}

std::string WithPayload(const std::string& payload) {
  v1::ModelBundle dummy;  // header for arbitrary payload bytes
  std::string file = EncodeBundleFile(dummy).substr(0, kBundleHeaderBytes);
  for (int i = 0; i < 8; ++i) file[16 + i] = static_cast<char>((payload.size() >> (8 * i)) & 0xff);
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(payload.data()), payload.size());
  std::memcpy(file.data() + 24, digest, sizeof(digest));
  return file + payload;
}

// Mutated strings make protobuf log a line each; the status is what we check.
class QuietProtobuf : public ::testing::Environment {
 public:
  void SetUp() override { google::protobuf::SetLogHandler(nullptr); }
};
const auto* const kQuiet = ::testing::AddGlobalTestEnvironment(new QuietProtobuf);

TEST(Bundle, ValidBundleRoundTripsThroughAFile) {
  const v1::ModelBundle b = ValidBundle();
  ASSERT_TRUE(ValidateBundle(b).ok()) << ValidateBundle(b);
  const auto path = std::filesystem::path(::testing::TempDir()) / "valid.bundle";
  ASSERT_TRUE(WriteBundleFile(path, b).ok());
  auto read = ReadBundleFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->SerializeAsString(), b.SerializeAsString());
  EXPECT_EQ(LoadAndRun(EncodeBundleFile(b), "valid"), Outcome::kAcceptedAndRan);
}

TEST(Bundle, MissingFileIsNotFound) {
  EXPECT_EQ(ReadBundleFile("/nonexistent/model.bundle").status().code(), absl::StatusCode::kNotFound);
}

// A directory used to be reported as 9223372036854775807 bytes, /dev/urandom
// as 0 bytes.
TEST(Bundle, ADirectoryOrADeviceIsNoBundle) {
  const auto dir = ReadBundleFile(::testing::TempDir());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(dir.status().message().find("is a directory, not a file"), absl::string_view::npos) << dir.status();
  const auto device = ReadBundleFile("/dev/urandom");
  EXPECT_EQ(device.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(device.status().message().find("is not a regular file"), absl::string_view::npos) << device.status();
}

TEST(Bundle, WriteRefusesAnInvalidBundleAndKeepsTheOldFile) {
  const auto path = std::filesystem::path(::testing::TempDir()) / "keep.bundle";
  ASSERT_TRUE(WriteBundleFile(path, ValidBundle()).ok());
  v1::ModelBundle bad = ValidBundle();
  bad.mutable_head()->set_num_classes(1);
  EXPECT_EQ(WriteBundleFile(path, bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ReadBundleFile(path).ok());
}

TEST(BundleMutation, FlippedBytesAreCaughtByTheChecksum) {
  const std::string file = EncodeBundleFile(ValidBundle());
  std::mt19937 rng(1);
  for (int i = 0; i < 300; ++i) {
    std::string m = file;
    const int flips = 1 + i % 4;
    for (int f = 0; f < flips; ++f) {
      const size_t pos = std::uniform_int_distribution<size_t>(0, m.size() - 1)(rng);
      m[pos] = static_cast<char>(m[pos] ^ (1 << (rng() % 8)));
    }
    EXPECT_EQ(LoadAndRun(m, "flip " + std::to_string(i)), Outcome::kRejected);
  }
}

TEST(BundleMutation, TruncatedAndExtendedFilesAreRejected) {
  const std::string file = EncodeBundleFile(ValidBundle());
  std::mt19937 rng(2);
  for (int i = 0; i < 200; ++i) {
    const size_t len = std::uniform_int_distribution<size_t>(0, file.size() - 1)(rng);
    EXPECT_EQ(LoadAndRun(file.substr(0, len), "truncate to " + std::to_string(len)), Outcome::kRejected);
  }
  EXPECT_EQ(LoadAndRun(file + "x", "extended"), Outcome::kRejected);
}

// Corrupt payloads behind a correct checksum reach the protobuf parser and
// the validator: every one must be rejected or run safely.
TEST(BundleMutation, CorruptPayloadsWithValidChecksumsAreSafe) {
  const std::string payload = ValidBundle().SerializeAsString();
  std::mt19937 rng(3);
  int rejected = 0;
  for (int i = 0; i < 400; ++i) {
    std::string m = payload;
    const int kind = i % 4;
    if (kind == 3) {
      m.resize(std::uniform_int_distribution<size_t>(0, m.size())(rng));
    } else {
      for (int f = 0; f <= kind * 3; ++f) {
        const size_t pos = std::uniform_int_distribution<size_t>(0, m.size() - 1)(rng);
        m[pos] = static_cast<char>(rng());
      }
    }
    if (LoadAndRun(WithPayload(m), "payload mutation " + std::to_string(i)) == Outcome::kRejected) ++rejected;
  }
  // Most mutations hit weight bytes or float mantissas and stay valid; many
  // hit structure. Both kinds must occur, or the test explores too little.
  EXPECT_GT(rejected, 40);
  EXPECT_LT(rejected, 400);
}

// Hostile values planted in specific fields: each must be rejected.
TEST(BundleMutation, OutOfRangeFieldsAreRejected) {
  const v1::ModelBundle valid = ValidBundle();
  using Mutation = std::function<void(v1::ModelBundle&, std::mt19937&)>;
  auto graph = [](v1::ModelBundle& b) { return b.mutable_backbone(); };
  auto any_tensor = [&](v1::ModelBundle& b, std::mt19937& r) {
    return graph(b)->mutable_tensors(static_cast<int>(r() % b.backbone().tensors_size()));
  };
  auto any_op = [&](v1::ModelBundle& b, std::mt19937& r) {
    return graph(b)->mutable_ops(static_cast<int>(r() % b.backbone().ops_size()));
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<std::pair<std::string, Mutation>> mutations = {
      {"tensor height 0", [&](auto& b, auto& r) { any_tensor(b, r)->mutable_shape()->set_height(0); }},
      {"tensor width huge", [&](auto& b, auto& r) { any_tensor(b, r)->mutable_shape()->set_width(70000); }},
      {"tensor elements over limit",
       [&](auto& b, auto& r) {
         auto* s = any_tensor(b, r)->mutable_shape();
         s->set_height(60000);
         s->set_width(60000);
         s->set_channels(60000);
       }},
      {"tensor scale zero", [&](auto& b, auto& r) { any_tensor(b, r)->set_scale(0.0f); }},
      {"tensor scale negative", [&](auto& b, auto& r) { any_tensor(b, r)->set_scale(-1.0f); }},
      {"tensor scale NaN", [&](auto& b, auto& r) { any_tensor(b, r)->set_scale(nan); }},
      {"tensor scale inf", [&](auto& b, auto& r) { any_tensor(b, r)->set_scale(inf); }},
      {"zero point 200", [&](auto& b, auto& r) { any_tensor(b, r)->set_zero_point(200); }},
      {"zero point -129", [&](auto& b, auto& r) { any_tensor(b, r)->set_zero_point(-129); }},
      {"op input out of range", [&](auto& b, auto& r) { any_op(b, r)->set_inputs(0, 1u << 30); }},
      {"op reads a later tensor",
       [&](auto& b, auto&) {
         graph(b)->mutable_ops(0)->set_inputs(0, static_cast<uint32_t>(b.backbone().tensors_size() - 1));
       }},
      {"op output out of range", [&](auto& b, auto& r) { any_op(b, r)->set_output(99999); }},
      {"op output written twice",
       [&](auto& b, auto&) { graph(b)->mutable_ops(1)->set_output(graph(b)->ops(0).output()); }},
      {"op output is the input", [&](auto& b, auto&) { graph(b)->mutable_ops(0)->set_output(0); }},
      {"op without kind", [&](auto& b, auto& r) { any_op(b, r)->clear_kind(); }},
      {"extra op input", [&](auto& b, auto& r) { any_op(b, r)->add_inputs(0); }},
      {"unknown activation", [&](auto& b, auto& r) { any_op(b, r)->set_activation(static_cast<v1::Activation>(77)); }},
      {"conv kernel 0", [&](auto& b, auto&) { graph(b)->mutable_ops(0)->mutable_conv2d()->set_kernel_height(0); }},
      {"conv kernel larger than input",
       [&](auto& b, auto&) {
         auto* c = graph(b)->mutable_ops(0)->mutable_conv2d();
         c->set_padding(v1::PADDING_VALID);
         c->set_kernel_width(200);
       }},
      {"conv stride 0", [&](auto& b, auto&) { graph(b)->mutable_ops(0)->mutable_conv2d()->set_stride_width(0); }},
      {"conv explicit pad as large as the kernel",
       [&](auto& b, auto&) {
         auto* c = graph(b)->mutable_ops(0)->mutable_conv2d();
         c->set_padding(v1::PADDING_EXPLICIT);
         c->mutable_pads()->set_left(c->kernel_width());
       }},
      {"conv explicit pads past the kernel",
       [&](auto& b, auto&) {
         auto* c = graph(b)->mutable_ops(0)->mutable_conv2d();
         c->set_padding(v1::PADDING_EXPLICIT);
         c->mutable_pads()->set_bottom(4000000000u);
       }},
      {"conv unknown padding",
       [&](auto& b, auto&) { graph(b)->mutable_ops(0)->mutable_conv2d()->set_padding(static_cast<v1::Padding>(9)); }},
      {"conv out channels mismatch",
       [&](auto& b, auto&) { graph(b)->mutable_ops(0)->mutable_conv2d()->set_out_channels(9); }},
      {"conv weights truncated",
       [&](auto& b, auto&) {
         auto* w = graph(b)->mutable_ops(0)->mutable_conv2d()->mutable_weights();
         w->set_int8_values(w->int8_values().substr(1));
       }},
      {"conv weight dims wrong",
       [&](auto& b, auto&) { graph(b)->mutable_ops(0)->mutable_conv2d()->mutable_weights()->set_dims(3, 5); }},
      {"conv channel scale NaN",
       [&](auto& b, auto&) {
         graph(b)->mutable_ops(0)->mutable_conv2d()->mutable_weights()->set_channel_scales(0, nan);
       }},
      {"conv channel scale zero",
       [&](auto& b, auto&) {
         graph(b)->mutable_ops(0)->mutable_conv2d()->mutable_weights()->set_channel_scales(2, 0.0f);
       }},
      {"conv multiplier too large",
       [&](auto& b, auto&) {
         graph(b)->mutable_ops(0)->mutable_conv2d()->mutable_weights()->set_channel_scales(1, 1e30f);
       }},
      {"conv bias missing",
       [&](auto& b, auto&) {
         graph(b)->mutable_ops(0)->mutable_conv2d()->mutable_weights()->mutable_int32_bias()->RemoveLast();
       }},
      {"depthwise weights missing",
       [&](auto& b, auto&) {
         graph(b)->mutable_ops(1)->mutable_depthwise_conv2d()->mutable_weights()->clear_int8_values();
       }},
      {"fc out features mismatch",
       [&](auto& b, auto&) {
         graph(b)->mutable_ops(b.backbone().ops_size() - 1)->mutable_fully_connected()->set_out_features(13);
       }},
      {"pool changes quantization",
       [&](auto& b, auto&) {
         for (auto& op : *graph(b)->mutable_ops())
           if (op.has_max_pool()) graph(b)->mutable_tensors(static_cast<int>(op.output()))->set_zero_point(5);
       }},
      {"reshape changes element count",
       [&](auto& b, auto&) {
         for (auto& op : *graph(b)->mutable_ops())
           if (op.has_reshape())
             graph(b)->mutable_tensors(static_cast<int>(op.output()))->mutable_shape()->set_channels(1);
       }},
      {"no ops", [&](auto& b, auto&) { graph(b)->clear_ops(); }},
      {"graph input out of range", [&](auto& b, auto&) { graph(b)->set_input(5000); }},
      {"graph output never written", [&](auto& b, auto&) { graph(b)->set_output(0); }},
      {"format version", [&](auto& b, auto&) { b.set_format_version(99); }},
      {"precision unknown", [&](auto& b, auto&) { b.set_precision(static_cast<v1::Precision>(7)); }},
      {"head classes 1", [&](auto& b, auto&) { b.mutable_head()->set_num_classes(1); }},
      {"head features mismatch", [&](auto& b, auto&) { b.mutable_head()->set_in_features(3); }},
      {"head weight NaN", [&](auto& b, auto&) { b.mutable_head()->set_weights(0, nan); }},
      {"head weights short", [&](auto& b, auto&) { b.mutable_head()->mutable_weights()->RemoveLast(); }},
      {"head huge",
       [&](auto& b, auto&) {
         b.mutable_head()->set_num_classes(65535);
         b.mutable_head()->set_in_features(1u << 20);
       }},
      {"label names short", [&](auto& b, auto&) { b.mutable_label_names()->RemoveLast(); }},
      {"input stddev zero", [&](auto& b, auto&) { b.mutable_input()->set_stddev(0, 0.0f); }},
      {"input mean NaN", [&](auto& b, auto&) { b.mutable_input()->set_mean(0, nan); }},
      {"input shape mismatch", [&](auto& b, auto&) { b.mutable_input()->mutable_shape()->set_height(11); }},
      {"input stats count", [&](auto& b, auto&) { b.mutable_input()->add_mean(0.0f); }},
      {"float weights in int8 bundle",
       [&](auto& b, auto&) {
         graph(b)->mutable_ops(0)->mutable_conv2d()->mutable_weights()->clear_int8_values();
         graph(b)->mutable_ops(0)->mutable_conv2d()->mutable_weights()->add_float_values(1.0f);
       }},
  };
  std::mt19937 rng(4);
  int runs = 0;
  // Each mutation on several random targets: over 1,000 mutants in all with
  // the byte-level tests above.
  for (int round = 0; round < 3; ++round) {
    for (const auto& [name, mutate] : mutations) {
      v1::ModelBundle b = valid;
      mutate(b, rng);
      const absl::Status s = ValidateBundle(b);
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name << " was accepted";
      EXPECT_EQ(LoadAndRun(WithPayload(b.SerializeAsString()), name), Outcome::kRejected) << name;
      ++runs;
    }
  }
  EXPECT_GE(runs, 140);
}

TEST(BundleMutation, ErrorsNameTheFieldAndValue) {
  v1::ModelBundle b = ValidBundle();
  b.mutable_backbone()->mutable_tensors(2)->set_zero_point(300);
  EXPECT_EQ(ValidateBundle(b).message(), "tensor 2 has zero point 300, outside [-128, 127]");
  b = ValidBundle();
  b.mutable_backbone()->mutable_ops(0)->mutable_conv2d()->set_stride_height(0);
  EXPECT_EQ(ValidateBundle(b).message(), "op 0 (Conv2D) (height): stride 0 outside [1, 255]");
}

// A Concat joins 2 to 64 maps of one height and width.
TEST(BundleMutation, ConcatErrorsNameTheInputs) {
  std::mt19937 rng(5);
  testing::ConvSpec spec;
  spec.in_h = spec.in_w = 6;
  const v1::ModelBundle valid = testing::RandomSingleOpBundle(v1::Op::kConcat, spec, rng);
  ASSERT_TRUE(ValidateBundle(valid).ok()) << ValidateBundle(valid);
  const int concat = valid.backbone().ops_size() - 1;

  v1::ModelBundle b = valid;
  b.mutable_backbone()->mutable_ops(concat)->mutable_inputs()->RemoveLast();
  EXPECT_EQ(ValidateBundle(b).message(), "op 1 (Concat) has 1 inputs, expected 2 to 64");

  b = valid;
  for (int i = 0; i < 63; ++i) b.mutable_backbone()->mutable_ops(concat)->add_inputs(0);
  EXPECT_EQ(ValidateBundle(b).message(), "op 1 (Concat) has 65 inputs, expected 2 to 64");

  // The 1x1 conv beside the input, strided to half the map.
  b = valid;
  v1::Graph* g = b.mutable_backbone();
  g->mutable_ops(0)->mutable_conv2d()->set_stride_height(2);
  g->mutable_ops(0)->mutable_conv2d()->set_stride_width(2);
  auto* half = g->mutable_tensors(static_cast<int>(g->ops(0).output()))->mutable_shape();
  half->set_height(3);
  half->set_width(3);
  EXPECT_EQ(ValidateBundle(b).message(), "op 1 (Concat): input 1 is 3x3, input 0 is 6x6 (only channels may differ)");
}

}  // namespace
}  // namespace tinyfed::models
