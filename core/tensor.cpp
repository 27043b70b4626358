// Tensor factories, views, conversions, host access and printing.
#include "core/tensor.h"

#include <algorithm>
#include <numeric>
#include <ostream>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/dispatch.h"
#include "core/ops/copy_ops.h"
#include "kernels/cpu/copy.h"

namespace autotp {

namespace {

void check_shape(const Shape& shape, const char* what) {
  for (int64_t s : shape) {
    AUTOTP_CHECK(s >= 0, "{}: negative size in shape {}", what, shape_str(shape));
  }
}

}  // namespace

// ---- factories -------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape, "Tensor::empty");
  Tensor t;
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  t.storage_ = std::make_shared<Storage>(bytes, device);
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(0.0);
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::arange(double start, double end, double step, DType dtype, Device device) {
  AUTOTP_CHECK(step != 0.0, "arange: step must be non-zero");
  const double span = (end - start) / step;
  const int64_t n = span > 0 ? static_cast<int64_t>(std::ceil(span)) : 0;
  std::vector<double> values(n);
  for (int64_t i = 0; i < n; ++i)
    values[i] = start + step * static_cast<double>(i);
  return from_vector(values, {n}, dtype, device);
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype,
                           Device device) {
  check_shape(shape, "Tensor::from_vector");
  AUTOTP_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
               "Tensor::from_vector: {} values do not fill shape {} ({} elements)", values.size(),
               shape_str(shape), shape_numel(shape));
  Tensor host = empty(shape, dtype, Device::cpu());
  dispatch_any(dtype, [&]<typename T>(TypeTag<T>) {
    T* out = host.data<T>();
    for (size_t i = 0; i < values.size(); ++i)
      out[i] = convert_value<T>(values[i]);
  });
  return device.is_cpu() ? host : host.to(device);
}

Tensor Tensor::from_vector_i64(const std::vector<int64_t>& values, const Shape& shape, DType dtype,
                               Device device) {
  check_shape(shape, "Tensor::from_vector_i64");
  AUTOTP_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
               "Tensor::from_vector_i64: {} values do not fill shape {}", values.size(),
               shape_str(shape));
  Tensor host = empty(shape, dtype, Device::cpu());
  dispatch_any(dtype, [&]<typename T>(TypeTag<T>) {
    T* out = host.data<T>();
    for (size_t i = 0; i < values.size(); ++i)
      out[i] = convert_value<T>(values[i]);
  });
  return device.is_cpu() ? host : host.to(device);
}

// ---- metadata ----------------------------------------------------------------

int64_t Tensor::size(int64_t d) const {
  return shape_[wrap_dim(d, dim(), "Tensor::size")];
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  AUTOTP_CHECK(defined(), "access to the data of an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_ * static_cast<int64_t>(itemsize());
}

Tensor Tensor::make_view_of(const Tensor& base, const Shape& shape, const Strides& strides,
                            int64_t offset) {
  Tensor t;
  t.storage_ = base.storage_;
  t.shape_ = shape;
  t.strides_ = strides;
  t.offset_ = offset;
  t.dtype_ = base.dtype_;
  return t;
}

// ---- views -----------------------------------------------------------------

namespace {

// Resolves one -1 in a requested shape against numel.
Shape infer_shape(const Shape& requested, int64_t numel, const char* what, const Shape& from) {
  Shape shape = requested;
  int64_t known = 1;
  int infer_at = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      AUTOTP_CHECK(infer_at < 0, "{}: only one -1 allowed in shape {}", what, shape_str(requested));
      infer_at = static_cast<int>(i);
    } else {
      AUTOTP_CHECK(shape[i] >= 0, "{}: invalid size {} in shape {}", what, shape[i],
                   shape_str(requested));
      known *= shape[i];
    }
  }
  if (infer_at >= 0) {
    AUTOTP_CHECK(known != 0 && numel % known == 0, "{}: cannot view shape {} as {}", what,
                 shape_str(from), shape_str(requested));
    shape[infer_at] = numel / known;
  }
  AUTOTP_CHECK(shape_numel(shape) == numel, "{}: shape {} ({} elements) does not match {} ({})",
               what, shape_str(requested), shape_numel(shape), shape_str(from), numel);
  return shape;
}

// Strides for viewing (shape, strides) as new_shape without copying, or empty if impossible.
bool view_strides(const Shape& shape, const Strides& strides, const Shape& new_shape,
                  Strides* out) {
  // Group old dims into contiguous chunks and map new dims onto them.
  out->assign(new_shape.size(), 0);
  const int64_t numel = shape_numel(shape);
  if (numel == 0 || shape.empty()) {
    *out = contiguous_strides(new_shape);
    return true;
  }
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t tensor_d = static_cast<int64_t>(shape.size()) - 1; tensor_d >= 0; --tensor_d) {
    tensor_numel *= shape[tensor_d];
    if (tensor_d == 0 ||
        (shape[tensor_d - 1] != 1 && strides[tensor_d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        (*out)[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (tensor_d > 0) {
        chunk_base_stride = strides[tensor_d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

}  // namespace

Tensor Tensor::view(const Shape& requested) const {
  const Shape new_shape = infer_shape(requested, numel(), "view", shape_);
  Strides new_strides;
  AUTOTP_CHECK(view_strides(shape_, strides_, new_shape, &new_strides),
               "view: cannot view a tensor of shape {} with strides {} as {} without a copy; "
               "use reshape()",
               shape_str(shape_), shape_str(strides_), shape_str(new_shape));
  Tensor out = make_view_of(*this, new_shape, new_strides, offset_);
  const Shape in_shape = shape_;
  return record_op(out, "ViewBackward", {this}, [in_shape](const Tensor& g) {
    return std::vector<Tensor>{g.reshape(in_shape)};
  });
}

Tensor Tensor::reshape(const Shape& requested) const {
  const Shape new_shape = infer_shape(requested, numel(), "reshape", shape_);
  Strides new_strides;
  if (view_strides(shape_, strides_, new_shape, &new_strides)) return view(new_shape);
  return contiguous().view(new_shape);
}

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  std::vector<int64_t> dims(shape_.size());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[wrap_dim(dim0, dim(), "transpose")], dims[wrap_dim(dim1, dim(), "transpose")]);
  return permute(dims);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  AUTOTP_CHECK(static_cast<int64_t>(dims.size()) == dim(),
               "permute: {} dims given for a tensor of {} dims", dims.size(), dim());
  Shape new_shape(dims.size());
  Strides new_strides(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = wrap_dim(dims[i], dim(), "permute");
    AUTOTP_CHECK(inverse[d] < 0, "permute: dim {} repeated in the permutation", d);
    inverse[d] = static_cast<int64_t>(i);
    new_shape[i] = shape_[d];
    new_strides[i] = strides_[d];
  }
  Tensor out = make_view_of(*this, new_shape, new_strides, offset_);
  return record_op(out, "PermuteBackward", {this},
                   [inverse](const Tensor& g) { return std::vector<Tensor>{g.permute(inverse)}; });
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim(), "narrow");
  if (start < 0) start += shape_[d];
  AUTOTP_CHECK(start >= 0 && length >= 0 && start + length <= shape_[d],
               "narrow: range [{}, {}) is outside dim {} of size {} (shape {})", start,
               start + length, d, shape_[d], shape_str(shape_));
  Shape new_shape = shape_;
  new_shape[d] = length;
  Tensor out = make_view_of(*this, new_shape, strides_, offset_ + start * strides_[d]);
  const Shape in_shape = shape_;
  const DType dt = dtype_;
  return record_op(out, "NarrowBackward", {this},
                   [in_shape, d, start, length, dt](const Tensor& g) {
                     Tensor full = Tensor::zeros(in_shape, g.dtype(), g.device());
                     full.narrow(d, start, length).copy_(g);
                     return std::vector<Tensor>{full};
                   });
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  if (index < 0) index += shape_[d];
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape new_shape = shape_;
  new_shape.insert(new_shape.begin() + d, 1);
  return view(new_shape);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  AUTOTP_CHECK(shape_[d] == 1, "squeeze: dim {} has size {}, not 1 (shape {})", d, shape_[d],
               shape_str(shape_));
  Shape new_shape = shape_;
  new_shape.erase(new_shape.begin() + d);
  return view(new_shape);
}

Tensor Tensor::expand(const Shape& requested) const {
  AUTOTP_CHECK(static_cast<int64_t>(requested.size()) >= dim(),
               "expand: target shape {} has fewer dims than the tensor's {}", shape_str(requested),
               shape_str(shape_));
  const size_t lead = requested.size() - shape_.size();
  Shape new_shape(requested.size());
  Strides new_strides(requested.size());
  for (size_t i = 0; i < requested.size(); ++i) {
    if (i < lead) {
      AUTOTP_CHECK(requested[i] >= 0, "expand: -1 not allowed in new leading dim {}", i);
      new_shape[i] = requested[i];
      new_strides[i] = 0;
      continue;
    }
    const int64_t cur = shape_[i - lead];
    const int64_t want = requested[i] == -1 ? cur : requested[i];
    AUTOTP_CHECK(want >= 0 && (want == cur || cur == 1),
                 "expand: cannot expand shape {} to {} (dim {})", shape_str(shape_),
                 shape_str(requested), i);
    new_shape[i] = want;
    new_strides[i] = (cur == 1 && want != 1) ? 0 : strides_[i - lead];
  }
  Tensor out = make_view_of(*this, new_shape, new_strides, offset_);
  const Shape in_shape = shape_;
  return record_op(out, "ExpandBackward", {this}, [in_shape](const Tensor& g) {
    return std::vector<Tensor>{sum_to_shape(g, in_shape)};
  });
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

// ---- conversion --------------------------------------------------------------

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_, device());
  out.copy_(*this);
  return record_op(out, "CloneBackward", {this},
                   [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor out = empty(shape_, dtype, device());
  out.copy_(*this);
  const DType from = dtype_;
  if (!is_floating(dtype) || !is_floating(from)) return out;  // integer casts carry no gradient
  return record_op(out, "ToDTypeBackward", {this},
                   [from](const Tensor& g) { return std::vector<Tensor>{g.to(from)}; });
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  const Tensor src = contiguous();
  Tensor out = empty(shape_, dtype_, device);
  cuda_memory::copy(out.raw_data(), device, src.raw_data(), src.device(),
                    static_cast<size_t>(numel()) * itemsize());
  const Device from = this->device();
  return record_op(out, "ToDeviceBackward", {this},
                   [from](const Tensor& g) { return std::vector<Tensor>{g.to(from)}; });
}

Tensor Tensor::detach() const {
  Tensor out = *this;
  out.meta_.reset();
  return out;
}

void Tensor::copy_(const Tensor& src) const {
  AUTOTP_CHECK(defined() && src.defined(), "copy_: undefined tensor");
  AUTOTP_CHECK(src.shape_ == shape_ || broadcast_shapes(src.shape_, shape_) == shape_,
               "copy_: source shape {} does not match destination shape {}", shape_str(src.shape_),
               shape_str(shape_));
  ops::copy_into(*this, src);
}

void Tensor::fill_(double value) const {
  ops::fill(*this, value);
}

// ---- host access -----------------------------------------------------------

std::vector<double> Tensor::to_vector() const {
  const Tensor host = to(Device::cpu()).detach().contiguous();
  std::vector<double> values(static_cast<size_t>(numel()));
  dispatch_any(dtype_, [&]<typename T>(TypeTag<T>) {
    const T* p = host.data<T>();
    for (size_t i = 0; i < values.size(); ++i)
      values[i] = convert_value<double>(p[i]);
  });
  return values;
}

std::vector<int64_t> Tensor::to_vector_i64() const {
  const Tensor host = to(Device::cpu()).detach().contiguous();
  std::vector<int64_t> values(static_cast<size_t>(numel()));
  dispatch_any(dtype_, [&]<typename T>(TypeTag<T>) {
    const T* p = host.data<T>();
    for (size_t i = 0; i < values.size(); ++i)
      values[i] = convert_value<int64_t>(p[i]);
  });
  return values;
}

double Tensor::item() const {
  AUTOTP_CHECK(numel() == 1, "item: tensor of shape {} has {} elements, not 1", shape_str(shape_),
               numel());
  return to_vector()[0];
}

// ---- autograd --------------------------------------------------------------

AutogradMeta& Tensor::ensure_autograd_meta() {
  if (!meta_) meta_ = std::make_shared<AutogradMeta>();
  return *meta_;
}

Tensor& Tensor::set_requires_grad(bool requires_grad) {
  AUTOTP_CHECK(is_leaf(),
               "set_requires_grad: only leaf tensors can be marked (this one comes from {})",
               meta_->grad_fn->name());
  AUTOTP_CHECK(!requires_grad || is_floating(dtype_),
               "set_requires_grad: a {} tensor cannot require a gradient (floating dtypes only)",
               dtype_name(dtype_));
  ensure_autograd_meta().requires_grad = requires_grad;
  return *this;
}

Tensor Tensor::grad() const {
  return meta_ && meta_->grad ? *meta_->grad : Tensor();
}

void Tensor::set_grad(const Tensor& grad) const {
  AUTOTP_CHECK(meta_ != nullptr, "set_grad: tensor does not track gradients");
  AUTOTP_CHECK(!grad.defined() || grad.shape() == shape_,
               "set_grad: gradient shape {} does not match tensor shape {}",
               shape_str(grad.shape()), shape_str(shape_));
  meta_->grad = grad.defined() ? std::make_shared<Tensor>(grad) : nullptr;
}

void Tensor::zero_grad() const {
  if (meta_) meta_->grad.reset();
}

int64_t Tensor::register_post_accumulate_grad_hook(PostAccumulateGradHook hook) const {
  AUTOTP_CHECK(is_leaf(),
               "register_post_accumulate_grad_hook: only leaf tensors accumulate gradients "
               "(this one comes from {})",
               meta_->grad_fn->name());
  AUTOTP_CHECK(requires_grad(),
               "register_post_accumulate_grad_hook: the tensor does not require a gradient "
               "(call set_requires_grad() first)");
  AUTOTP_CHECK(hook != nullptr, "register_post_accumulate_grad_hook: empty hook");
  const int64_t id = meta_->next_hook_id++;
  meta_->post_accumulate_grad_hooks.emplace_back(id, std::move(hook));
  return id;
}

void Tensor::remove_post_accumulate_grad_hook(int64_t id) const {
  if (!meta_) return;
  auto& hooks = meta_->post_accumulate_grad_hooks;
  hooks.erase(std::remove_if(hooks.begin(), hooks.end(),
                             [id](const auto& entry) { return entry.first == id; }),
              hooks.end());
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> kNone;
  return meta_ ? meta_->grad_fn : kNone;
}

// ---- printing --------------------------------------------------------------

namespace {

constexpr int64_t kEdgeItems = 3;  // values shown at each end of a long dim

void format_values(std::string& out, const std::vector<double>& values, const Shape& shape,
                   const Strides& strides, int64_t dim, int64_t base, bool integral) {
  const int64_t n = shape[dim];
  out += '[';
  for (int64_t i = 0; i < n; ++i) {
    if (n > 2 * kEdgeItems && i == kEdgeItems) {
      out += "..., ";
      i = n - kEdgeItems;
    }
    if (dim + 1 == static_cast<int64_t>(shape.size())) {
      const double v = values[base + i * strides[dim]];
      out += integral ? fmt::format("{}", static_cast<int64_t>(v)) : fmt::format("{:.4g}", v);
    } else {
      format_values(out, values, shape, strides, dim + 1, base + i * strides[dim], integral);
    }
    if (i + 1 < n) out += dim + 1 == static_cast<int64_t>(shape.size()) ? ", " : ",\n ";
  }
  out += ']';
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  std::string out =
      fmt::format("Tensor(dtype={}, shape={}, device={}{})\n", dtype_name(dtype_),
                  shape_str(shape_), device().str(), requires_grad() ? ", requires_grad" : "");
  const std::vector<double> values = to_vector();
  if (dim() == 0) {
    out += fmt::format("{:.4g}", values[0]);
  } else {
    format_values(out, values, shape_, contiguous_strides(shape_), 0, 0, !is_floating(dtype_));
  }
  return out;
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  return os << t.str();
}

}  // namespace autotp
