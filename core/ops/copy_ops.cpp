// copy_into / fill: CPU through kernels/cpu/copy.h, CUDA through kernels/cuda/copy.h.
#include "core/ops/copy_ops.h"

#include "core/dispatch.h"
#include "kernels/cpu/copy.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/copy.h"
#endif

namespace autotp::ops {

Strides broadcast_strides(const Tensor& t, const Shape& shape) {
  const size_t lead = shape.size() - t.shape().size();
  Strides strides(shape.size(), 0);
  for (size_t i = lead; i < shape.size(); ++i) {
    const int64_t cur = t.shape()[i - lead];
    AUTOTP_ASSERT(cur == shape[i] || cur == 1, "broadcast of {} to {}", shape_str(t.shape()),
                  shape_str(shape));
    strides[i] = cur == shape[i] ? t.strides()[i - lead] : 0;
  }
  return strides;
}

void copy_into(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  Tensor source = src;
  if (src.device() != dst.device()) {
    // Cross-device: bring a contiguous copy of src onto dst's device first.
    source = src.detach().contiguous().to(dst.device());
  }
  const Strides src_strides = broadcast_strides(source, dst.shape());
  const int ndim = static_cast<int>(dst.dim());
  if (dst.device().is_cpu()) {
    dispatch_any(dst.dtype(), [&]<typename D>(TypeTag<D>) {
      dispatch_any(source.dtype(), [&]<typename S>(TypeTag<S>) {
        kernels::cpu::strided_copy(static_cast<D*>(dst.raw_data()), dst.strides().data(),
                                   static_cast<const S*>(source.raw_data()), src_strides.data(),
                                   dst.shape().data(), ndim);
      });
    });
    return;
  }
#ifdef AUTOTP_WITH_CUDA
  kernels::cuda::strided_copy(dst.raw_data(), static_cast<int>(dst.dtype()), dst.strides().data(),
                              source.raw_data(), static_cast<int>(source.dtype()),
                              src_strides.data(), dst.shape().data(), ndim, nullptr);
#else
  AUTOTP_FAIL("copy_: CUDA tensors need a build with the CUDA backend");
#endif
}

void fill(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  // Fill a one-element source and broadcast-copy it: works for every view and device.
  Tensor scalar = Tensor::empty({}, dst.dtype(), Device::cpu());
  dispatch_any(dst.dtype(),
               [&]<typename T>(TypeTag<T>) { *scalar.data<T>() = convert_value<T>(value); });
  if (dst.device().is_cpu()) {
    copy_into(dst, scalar);
  } else {
    copy_into(dst, scalar.to(dst.device()));
  }
}

}  // namespace autotp::ops
