#include "model_import/internal/onnx_constants.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "tinyfed/base/status_macros.h"

namespace tinyfed::model_import::internal {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

// Shape arithmetic, not weights: a folded value this large is an attack.
constexpr uint64_t kMaxFoldedElements = uint64_t{1} << 20;

uint64_t Count(const std::vector<int64_t>& dims) {
  uint64_t n = 1;
  for (int64_t d : dims) n *= static_cast<uint64_t>(d);
  return n;
}

std::vector<uint64_t> Strides(const std::vector<int64_t>& dims) {
  std::vector<uint64_t> s(dims.size(), 1);
  for (size_t i = dims.size(); i-- > 1;) s[i - 1] = s[i] * static_cast<uint64_t>(dims[i]);
  return s;
}

// An axis of a rank-r tensor, negative counting from the end.
absl::StatusOr<size_t> Axis(int64_t axis, size_t rank) {
  const int64_t r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r) return InvalidArgumentError(StrCat("axis ", axis, " of a rank-", rank, " tensor"));
  return static_cast<size_t>(axis < 0 ? axis + r : axis);
}

// The values of `from` at `at`, in that order, as a tensor of `dims`.
Initializer Pick(const Initializer& from, const std::vector<uint64_t>& at, std::vector<int64_t> dims) {
  Initializer out;
  out.dims = std::move(dims);
  out.is_float = from.is_float;
  for (uint64_t i : at) {
    if (from.is_float) {
      out.floats.push_back(from.floats[i]);
    } else {
      out.ints.push_back(from.ints[i]);
    }
  }
  return out;
}

absl::StatusOr<std::vector<int64_t>> Ints(const Initializer* t, const char* what) {
  if (t == nullptr || t->is_float) return InvalidArgumentError(StrCat(what, " must be an int64 constant"));
  return t->ints;
}

absl::StatusOr<Initializer> FromAttribute(const onnx::NodeProto& node, const std::string& source, uint64_t* total) {
  for (const auto& a : node.attribute()) {
    Initializer v;
    if (a.name() == "value") return ReadTensor(a.t(), source, total);
    if (a.name() == "value_float") {
      v.floats = {a.f()};
    } else if (a.name() == "value_floats") {
      v.floats.assign(a.floats().begin(), a.floats().end());
      v.dims = {static_cast<int64_t>(v.floats.size())};
    } else if (a.name() == "value_int") {
      v.is_float = false;
      v.ints = {a.i()};
    } else if (a.name() == "value_ints") {
      v.is_float = false;
      v.ints.assign(a.ints().begin(), a.ints().end());
      v.dims = {static_cast<int64_t>(v.ints.size())};
    } else {
      continue;
    }
    *total += v.count();
    return v;
  }
  return InvalidArgumentError("a Constant without a value, value_float(s) or value_int(s)");
}

absl::StatusOr<Initializer> ConstantOfShape(const onnx::NodeProto& node, const Initializer* shape,
                                            const std::string& source, uint64_t* total) {
  TINYFED_ASSIGN_OR_RETURN(std::vector<int64_t> dims, Ints(shape, "the shape"));
  if (std::any_of(dims.begin(), dims.end(), [](int64_t d) { return d < 0 || d > 1 << 20; }) ||
      Count(dims) > kMaxFoldedElements) {
    return InvalidArgumentError("a ConstantOfShape of a negative or too large shape");
  }
  Initializer fill;
  fill.floats = {0.0f};
  for (const auto& a : node.attribute()) {
    if (a.name() == "value") {
      TINYFED_ASSIGN_OR_RETURN(fill, ReadTensor(a.t(), source, total));
    }
  }
  if (fill.count() != 1) return InvalidArgumentError("a ConstantOfShape value of other than one element");
  return Pick(fill, std::vector<uint64_t>(Count(dims), 0), dims);
}

absl::StatusOr<Initializer> Concat(const onnx::NodeProto& node, const std::vector<const Initializer*>& in) {
  if (in.empty() || std::any_of(in.begin(), in.end(), [](const Initializer* t) { return t == nullptr; })) {
    return InvalidArgumentError("a Concat without inputs");
  }
  const std::vector<int64_t>& first = in[0]->dims;
  TINYFED_ASSIGN_OR_RETURN(size_t axis, Axis(IntAttribute(node, "axis", 0), first.size()));
  std::vector<int64_t> dims = first;
  dims[axis] = 0;
  for (const Initializer* t : in) {
    std::vector<int64_t> a = t->dims, b = first;
    if (a.size() != b.size() || t->is_float != in[0]->is_float) {
      return InvalidArgumentError("Concat inputs of different ranks or types");
    }
    a[axis] = b[axis] = 0;
    if (a != b) return InvalidArgumentError("Concat inputs whose other dimensions differ");
    dims[axis] += t->dims[axis];
  }
  // Row by row of the dimensions before the axis, each input's block in turn.
  const uint64_t outer = Count(std::vector<int64_t>(first.begin(), first.begin() + static_cast<ptrdiff_t>(axis)));
  Initializer out;
  out.is_float = in[0]->is_float;
  out.dims = dims;
  for (uint64_t o = 0; o < outer; ++o) {
    for (const Initializer* t : in) {
      const uint64_t block = t->count() / std::max<uint64_t>(outer, 1);
      std::vector<uint64_t> at(block);
      std::iota(at.begin(), at.end(), o * block);
      Initializer part = Pick(*t, at, {});
      out.floats.insert(out.floats.end(), part.floats.begin(), part.floats.end());
      out.ints.insert(out.ints.end(), part.ints.begin(), part.ints.end());
    }
  }
  return out;
}

absl::StatusOr<Initializer> Reshape(const Initializer* data, const Initializer* shape) {
  TINYFED_ASSIGN_OR_RETURN(std::vector<int64_t> dims, Ints(shape, "the shape"));
  int inferred = -1;
  uint64_t known = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == 0 && i < data->dims.size()) dims[i] = data->dims[i];
    if (dims[i] == -1 && inferred < 0) {
      inferred = static_cast<int>(i);
    } else if (dims[i] < 1) {
      return InvalidArgumentError(StrCat("a Reshape to dimension ", dims[i]));
    } else {
      known *= static_cast<uint64_t>(dims[i]);
    }
  }
  if (inferred >= 0 && known > 0) dims[static_cast<size_t>(inferred)] = static_cast<int64_t>(data->count() / known);
  if (Count(dims) != data->count()) return InvalidArgumentError("a Reshape that changes the number of values");
  Initializer out = *data;
  out.dims = dims;
  return out;
}

absl::StatusOr<Initializer> Slice(const std::vector<const Initializer*>& in) {
  if (in.size() < 3 || in[0] == nullptr) return InvalidArgumentError("a Slice without data, starts and ends");
  const Initializer& data = *in[0];
  const size_t rank = data.dims.size();
  TINYFED_ASSIGN_OR_RETURN(std::vector<int64_t> starts, Ints(in[1], "starts"));
  TINYFED_ASSIGN_OR_RETURN(std::vector<int64_t> ends, Ints(in[2], "ends"));
  std::vector<int64_t> axes(starts.size()), steps(starts.size(), 1);
  std::iota(axes.begin(), axes.end(), 0);
  if (in.size() > 3 && in[3] != nullptr) {
    TINYFED_ASSIGN_OR_RETURN(axes, Ints(in[3], "axes"));
  }
  if (in.size() > 4 && in[4] != nullptr) {
    TINYFED_ASSIGN_OR_RETURN(steps, Ints(in[4], "steps"));
  }
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size()) {
    return InvalidArgumentError("Slice starts, ends, axes and steps of different lengths");
  }
  std::vector<int64_t> first(rank, 0), step(rank, 1), dims = data.dims;
  for (size_t k = 0; k < starts.size(); ++k) {
    TINYFED_ASSIGN_OR_RETURN(size_t a, Axis(axes[k], rank));
    const int64_t n = data.dims[a], s = steps[k];
    if (s == 0 || s == std::numeric_limits<int64_t>::min()) return InvalidArgumentError(StrCat("a Slice step of ", s));
    // ONNX clamps starts and ends into the axis, differently for each direction.
    int64_t b = starts[k] < 0 ? starts[k] + n : starts[k];
    int64_t e = ends[k] < 0 ? ends[k] + n : ends[k];
    int64_t length = 0;
    if (n > 0 && s > 0) {
      b = std::clamp<int64_t>(b, 0, n);
      e = std::clamp<int64_t>(e, 0, n);
      length = e > b ? (e - b - 1) / s + 1 : 0;
    } else if (n > 0) {
      b = std::clamp<int64_t>(b, 0, n - 1);
      e = std::clamp<int64_t>(e, -1, n - 1);
      length = b > e ? (b - e - 1) / -s + 1 : 0;
    }
    first[a] = b;
    step[a] = s;
    dims[a] = length;
  }
  const std::vector<uint64_t> from = Strides(data.dims), to = Strides(dims);
  std::vector<uint64_t> at(Count(dims));
  for (uint64_t i = 0; i < at.size(); ++i) {
    uint64_t src = 0;
    for (size_t a = 0; a < rank; ++a) {
      const int64_t j = static_cast<int64_t>(i / to[a] % static_cast<uint64_t>(dims[a]));
      src += static_cast<uint64_t>(first[a] + j * step[a]) * from[a];
    }
    at[i] = src;
  }
  return Pick(data, at, dims);
}

absl::StatusOr<Initializer> Transpose(const onnx::NodeProto& node, const Initializer* data) {
  const size_t rank = data->dims.size();
  std::vector<int64_t> perm = IntsAttribute(node, "perm");
  if (perm.empty()) {
    for (size_t i = rank; i-- > 0;) perm.push_back(static_cast<int64_t>(i));
  }
  std::vector<int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (sorted.size() != rank || sorted[i] != static_cast<int64_t>(i)) {
      return InvalidArgumentError("a Transpose perm that is not a permutation of the axes");
    }
  }
  std::vector<int64_t> dims(rank);
  for (size_t a = 0; a < rank; ++a) dims[a] = data->dims[static_cast<size_t>(perm[a])];
  const std::vector<uint64_t> from = Strides(data->dims), to = Strides(dims);
  std::vector<uint64_t> at(Count(dims));
  for (uint64_t i = 0; i < at.size(); ++i) {
    uint64_t src = 0;
    for (size_t a = 0; a < rank; ++a)
      src += i / to[a] % static_cast<uint64_t>(dims[a]) * from[static_cast<size_t>(perm[a])];
    at[i] = src;
  }
  return Pick(*data, at, dims);
}

absl::StatusOr<Initializer> Cast(const onnx::NodeProto& node, const Initializer* data) {
  const int64_t to = IntAttribute(node, "to", 0);
  Initializer out;
  out.dims = data->dims;
  if (to == onnx::TensorProto::FLOAT) {
    if (data->is_float) return *data;
    out.floats.assign(data->ints.begin(), data->ints.end());
    return out;
  }
  if (to == onnx::TensorProto::INT64 || to == onnx::TensorProto::INT32 || to == onnx::TensorProto::INT8 ||
      to == onnx::TensorProto::UINT8) {
    out.is_float = false;
    out.is_uint8 = to == onnx::TensorProto::UINT8;
    if (!data->is_float) {
      out.ints = data->ints;
    } else {
      for (float v : data->floats) out.ints.push_back(static_cast<int64_t>(v));
    }
    return out;
  }
  return InvalidArgumentError(StrCat("a Cast to element type ", to, " (float32 and int64 are folded)"));
}

// Unsqueeze and Squeeze: axes as the input (opset 13) or the attribute.
absl::StatusOr<Initializer> Squeezing(const onnx::NodeProto& node, const std::vector<const Initializer*>& in) {
  std::vector<int64_t> axes = IntsAttribute(node, "axes");
  if (in.size() > 1 && in[1] != nullptr) {
    TINYFED_ASSIGN_OR_RETURN(axes, Ints(in[1], "axes"));
  }
  Initializer out = *in[0];
  if (node.op_type() == "Unsqueeze") {
    const size_t rank = out.dims.size() + axes.size();
    std::vector<bool> inserted(rank, false);
    for (int64_t a : axes) {
      TINYFED_ASSIGN_OR_RETURN(size_t k, Axis(a, rank));
      inserted[k] = true;
    }
    std::vector<int64_t> dims;
    size_t next = 0;
    for (size_t k = 0; k < rank; ++k) dims.push_back(inserted[k] ? 1 : out.dims[next++]);
    out.dims = dims;
    return out;
  }
  std::vector<int64_t> dims;
  for (size_t k = 0; k < out.dims.size(); ++k) {
    bool drop = axes.empty() && out.dims[k] == 1;
    for (int64_t a : axes) {
      TINYFED_ASSIGN_OR_RETURN(size_t j, Axis(a, out.dims.size()));
      drop = drop || j == k;
    }
    if (drop && out.dims[k] != 1) return InvalidArgumentError("a Squeeze of an axis that is not 1");
    if (!drop) dims.push_back(out.dims[k]);
  }
  out.dims = dims;
  return out;
}

absl::StatusOr<Initializer> Gather(const onnx::NodeProto& node, const Initializer* data, const Initializer* indices) {
  TINYFED_ASSIGN_OR_RETURN(std::vector<int64_t> idx, Ints(indices, "the indices"));
  TINYFED_ASSIGN_OR_RETURN(size_t axis, Axis(IntAttribute(node, "axis", 0), data->dims.size()));
  if (axis != 0 || data->dims.size() != 1) return InvalidArgumentError("a Gather other than of a 1-D constant");
  std::vector<uint64_t> at;
  for (int64_t i : idx) {
    const int64_t n = data->dims[0];
    if (i < -n || i >= n) return InvalidArgumentError(StrCat("a Gather index ", i, " out of ", n));
    at.push_back(static_cast<uint64_t>(i < 0 ? i + n : i));
  }
  return Pick(*data, at, indices->dims);
}

absl::StatusOr<Initializer> Arithmetic(const onnx::NodeProto& node, const Initializer* a, const Initializer* b) {
  TINYFED_ASSIGN_OR_RETURN(std::vector<int64_t> x, Ints(a, "an operand"));
  TINYFED_ASSIGN_OR_RETURN(std::vector<int64_t> y, Ints(b, "an operand"));
  if (x.size() != y.size() && x.size() != 1 && y.size() != 1) {
    return InvalidArgumentError("int64 arithmetic on constants of different sizes");
  }
  Initializer out = x.size() >= y.size() ? *a : *b;
  const std::string& op = node.op_type();
  for (size_t i = 0; i < out.ints.size(); ++i) {
    const int64_t p = x[x.size() == 1 ? 0 : i], q = y[y.size() == 1 ? 0 : i];
    if (op == "Div" && q == 0) return InvalidArgumentError("a Div by zero");
    out.ints[i] = op == "Add" ? p + q : op == "Sub" ? p - q : op == "Mul" ? p * q : p / q;
  }
  return out;
}

// DequantizeLinear of quantized weights: scale * (x - zero_point), per tensor
// or per channel along `axis`.
absl::StatusOr<Initializer> Dequantize(const onnx::NodeProto& node, const std::vector<const Initializer*>& in) {
  const Initializer* x = in[0];
  const Initializer* scale = in.size() > 1 ? in[1] : nullptr;
  const Initializer* zero = in.size() > 2 ? in[2] : nullptr;
  if (x->is_float || scale == nullptr || !scale->is_float || scale->floats.empty()) {
    return InvalidArgumentError("a DequantizeLinear of other than integers by a float scale");
  }
  uint64_t period = 1, inner = x->count();
  if (scale->floats.size() > 1) {
    TINYFED_ASSIGN_OR_RETURN(size_t axis, Axis(IntAttribute(node, "axis", 1), x->dims.size()));
    inner = 1;
    for (size_t d = axis + 1; d < x->dims.size(); ++d) inner *= static_cast<uint64_t>(x->dims[d]);
    period = static_cast<uint64_t>(x->dims[axis]);
    if (period != scale->floats.size())
      return InvalidArgumentError("a DequantizeLinear scale per channel of another axis");
  }
  if (zero != nullptr && (zero->is_float || zero->count() != scale->count())) {
    return InvalidArgumentError("a DequantizeLinear zero point that does not match its scale");
  }
  Initializer out;
  out.dims = x->dims;
  for (uint64_t i = 0; i < x->count(); ++i) {
    const uint64_t c = i / std::max<uint64_t>(inner, 1) % period;
    const int64_t z = zero == nullptr ? 0 : zero->ints[c];
    out.floats.push_back(scale->floats[c] * static_cast<float>(x->ints[i] - z));
  }
  return out;
}

}  // namespace

bool IsFoldable(const std::string& op_type) {
  for (const char* op : {"Constant", "ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose", "Cast", "Unsqueeze",
                         "Squeeze", "Gather", "Add", "Sub", "Mul", "Div", "DequantizeLinear"}) {
    if (op_type == op) return true;
  }
  return false;
}

absl::StatusOr<Initializer> FoldConstant(const onnx::NodeProto& node, const std::vector<const Initializer*>& inputs,
                                         const std::string& source, uint64_t* total) {
  const std::string& op = node.op_type();
  if (op == "Constant") return FromAttribute(node, source, total);
  if (op != "Concat" && (inputs.empty() || inputs[0] == nullptr)) return InvalidArgumentError("its input is missing");
  const Initializer* second = inputs.size() > 1 ? inputs[1] : nullptr;
  absl::StatusOr<Initializer> out = InvalidArgumentError(StrCat(op, " is not folded"));
  if (op == "ConstantOfShape") out = ConstantOfShape(node, inputs[0], source, total);
  if (op == "Concat") out = Concat(node, inputs);
  if (op == "Reshape") out = Reshape(inputs[0], second);
  if (op == "Slice") out = Slice(inputs);
  if (op == "Transpose") out = Transpose(node, inputs[0]);
  if (op == "Cast") out = Cast(node, inputs[0]);
  if (op == "Unsqueeze" || op == "Squeeze") out = Squeezing(node, inputs);
  if (op == "Gather") out = Gather(node, inputs[0], second);
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") out = Arithmetic(node, inputs[0], second);
  if (op == "DequantizeLinear") out = Dequantize(node, inputs);
  if (!out.ok()) return out;
  if (out->count() > kMaxFoldedElements) return InvalidArgumentError("a folded constant of over 2^20 values");
  *total += out->count();
  if (*total > kMaxConstantElements) return InvalidArgumentError("the constants hold more values than a gateway holds");
  return out;
}

}  // namespace tinyfed::model_import::internal
