#include "tinyfed/models/float_model.h"

#include <utility>

#include "models/internal/float_network.h"

namespace tinyfed::models {

struct FloatModel::Network {
  internal::FloatNetwork net;
  size_t embedding_size = 0;
};

FloatModel::FloatModel(std::unique_ptr<Network> network) : network_(std::move(network)) {}
FloatModel::~FloatModel() = default;

absl::StatusOr<std::unique_ptr<FloatModel>> FloatModel::Create(const v1::ModelBundle& bundle) {
  if (bundle.precision() != v1::PRECISION_FLOAT32) {
    return absl::InvalidArgumentError("a FloatModel runs float32 bundles; this one is int8");
  }
  auto net = internal::FloatNetwork::Create(bundle);
  if (!net.ok()) return net.status();
  const v1::Shape& shape = bundle.backbone().tensors(static_cast<int>(bundle.backbone().output())).shape();
  auto network = std::make_unique<Network>(Network{std::move(*net), internal::Elements(shape)});
  auto model = std::unique_ptr<FloatModel>(new FloatModel(std::move(network)));
  model->embedding_tensor_ = static_cast<int>(bundle.backbone().output());
  return model;
}

std::vector<float> FloatModel::Embed(std::span<const float> features, int batch) {
  network_->net.Forward(features, batch);
  const std::span<const float> e = network_->net.activations(embedding_tensor_);
  return {e.begin(), e.begin() + static_cast<std::ptrdiff_t>(network_->embedding_size * static_cast<size_t>(batch))};
}

size_t FloatModel::input_size() const { return network_->net.input_size(); }
size_t FloatModel::embedding_size() const { return network_->embedding_size; }

}  // namespace tinyfed::models
