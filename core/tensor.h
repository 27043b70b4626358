// Tensor: a value type over shared Storage (offset, shape, strides, dtype, device) plus a
// shared autograd record. Copies of a Tensor alias the same data and the same autograd state.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"
#include "core/storage.h"

namespace autotp {

class Node;
class Tensor;

// Called with the leaf tensor once its .grad has been updated by a backward pass.
using PostAccumulateGradHook = std::function<void(const Tensor& leaf)>;

// Autograd state of one tensor, shared by its copies (not by its views or detach()).
struct AutogradMeta {
  bool requires_grad = false;
  std::shared_ptr<Tensor> grad;          // accumulated gradient of a leaf
  std::shared_ptr<Node> grad_fn;         // the op that produced this tensor (null for leaves)
  std::weak_ptr<Node> grad_accumulator;  // the AccumulateGrad node of a leaf, while a graph uses it
  // A leaf's post-accumulate-grad hooks with their ids, in registration order.
  std::vector<std::pair<int64_t, PostAccumulateGradHook>> post_accumulate_grad_hooks;
  int64_t next_hook_id = 0;
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (no storage)

  // ---- factories ---------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  // [start, start+step, ...) below `end`.
  static Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::F32,
                       Device device = Device::cpu());
  static Tensor arange(int64_t end, DType dtype = DType::I64, Device device = Device::cpu()) {
    return arange(0.0, static_cast<double>(end), 1.0, dtype, device);
  }
  // Copies host values (converted to `dtype`) into a new tensor of `shape`.
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                            DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor from_vector_i64(const std::vector<int64_t>& values, const Shape& shape,
                                DType dtype = DType::I64, Device device = Device::cpu());

  // ---- metadata ----------------------------------------------------------
  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Strides& strides() const { return strides_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t d) const;
  int64_t numel() const { return shape_numel(shape_); }
  int64_t offset() const { return offset_; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  size_t itemsize() const { return dtype_size(dtype_); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  // True when both tensors view the same storage.
  bool shares_storage(const Tensor& other) const { return storage_ == other.storage_; }

  // Pointer to the first element (storage + offset).
  void* raw_data() const;
  // Typed pointer to the first element; checks the dtype.
  template <typename T>
  T* data() const {
    AUTOTP_CHECK(DTypeOf<T>::value == dtype_, "tensor of dtype {} accessed as {}",
                 dtype_name(dtype_), dtype_name(DTypeOf<T>::value));
    return static_cast<T*>(raw_data());
  }

  // ---- views (share storage; differentiable) ------------------------------
  Tensor view(const Shape& shape) const;     // needs compatible strides
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a copy
  Tensor flatten() const { return reshape({numel()}); }
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;  // narrow + squeeze
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor expand(const Shape& shape) const;  // -1 keeps a size
  Tensor contiguous() const;                // *this when already contiguous

  // ---- conversion (differentiable) ---------------------------------------
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor clone() const;
  // Same data, no autograd history, requires_grad false.
  Tensor detach() const;

  // ---- in-place (no autograd; for optimizers, initialization and kernels) --
  // Copies `src` (same shape, any dtype/device/strides) into this tensor's elements.
  void copy_(const Tensor& src) const;
  void fill_(double value) const;
  void zero_() const { fill_(0.0); }

  // ---- host access --------------------------------------------------------
  // All elements, row-major, converted to double / int64 (copies from the device if needed).
  std::vector<double> to_vector() const;
  std::vector<int64_t> to_vector_i64() const;
  double item() const;  // the value of a one-element tensor

  // ---- autograd -----------------------------------------------------------
  bool requires_grad() const { return meta_ && meta_->requires_grad; }
  // Marks a leaf as requiring a gradient (returns *this for chaining).
  Tensor& set_requires_grad(bool requires_grad = true);
  // The accumulated gradient of a leaf (undefined until a backward pass reaches it).
  Tensor grad() const;
  void set_grad(const Tensor& grad) const;
  void zero_grad() const;  // drops the accumulated gradient
  const std::shared_ptr<Node>& grad_fn() const;
  bool is_leaf() const { return !meta_ || !meta_->grad_fn; }
  // Registers `hook` on a leaf that requires a gradient (PyTorch's
  // register_post_accumulate_grad_hook): every backward pass that reaches this leaf calls it
  // once the leaf's .grad holds the new sum, once per backward() however often the forward
  // used the leaf. Hooks run in registration order, with grad mode off, and belong to the
  // tensor's shared autograd record (its copies see them). A hook receives the leaf: it should
  // not capture a copy of it (that would keep the record alive). Returns an id for removal.
  int64_t register_post_accumulate_grad_hook(PostAccumulateGradHook hook) const;
  // Removes the hook with this id; an id that is not registered (e.g. already removed) is
  // ignored.
  void remove_post_accumulate_grad_hook(int64_t id) const;
  // Backpropagates from this tensor. A scalar uses gradient 1; otherwise pass `grad_output`
  // of the same shape. The graph is freed afterwards unless `retain_graph`.
  void backward(const Tensor& grad_output, bool retain_graph = false) const;
  void backward() const;

  // Internal: the shared autograd record, created on demand.
  const std::shared_ptr<AutogradMeta>& autograd_meta() const { return meta_; }
  AutogradMeta& ensure_autograd_meta();
  // Internal: a tensor viewing `storage` with the given geometry.
  static Tensor make_view_of(const Tensor& base, const Shape& shape, const Strides& strides,
                             int64_t offset);

  // ---- printing -----------------------------------------------------------
  // "Tensor(dtype=f32, shape=[2, 3], device=cpu)" followed by the (abbreviated) values.
  std::string str() const;

 private:
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_;
  Strides strides_;
  DType dtype_ = DType::F32;
  std::shared_ptr<AutogradMeta> meta_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

}  // namespace autotp
