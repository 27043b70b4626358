// sum_of_squares over a list of tensors: the CPU reference kernel tensor by tensor, or one
// multi-tensor CUDA launch for all of them.
#include <vector>

#include "core/dispatch.h"
#include "core/ops/reduce.h"
#include "kernels/cpu/sum_of_squares.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/sum_of_squares.h"
#endif

namespace autotp::ops {

Tensor sum_of_squares(const std::vector<Tensor>& tensors) {
  const char* op = "sum_of_squares";
  AUTOTP_CHECK(!tensors.empty(), "{}: no tensors given (the device of the result is unknown)", op);
  const Device device = tensors.front().device();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    AUTOTP_CHECK(t.defined() && is_floating(t.dtype()),
                 "{}: tensor {} must be a defined floating tensor", op, i);
    AUTOTP_CHECK(t.device() == device, "{}: tensor {} is on {}, tensor 0 on {}", op, i,
                 t.device().str(), device.str());
  }
  if (device.is_cpu()) {
    double total = 0.0;
    for (const Tensor& t : tensors) {
      // 16-bit values widen to f32 exactly: the sum their f32 copies would give.
      const Tensor c = (t.dtype() == DType::F64 ? t : t.to(DType::F32)).contiguous();
      dispatch_float(c.dtype(), op, [&]<typename T>(TypeTag<T>) {
        total += kernels::cpu::sum_of_squares<T>(c.data<T>(), c.numel());
      });
    }
    return Tensor::from_vector({total}, {}, DType::F64);
  }
#ifdef AUTOTP_WITH_CUDA
  // One launch over every tensor, dtypes mixed: the sum's order depends on the tensors'
  // sizes and order only (kernels/cuda/sum_of_squares.h).
  std::vector<Tensor> sources;  // alive until the launch is enqueued
  std::vector<kernels::cuda::SquaresArray> arrays;
  for (const Tensor& t : tensors) {
    sources.push_back(t.detach().contiguous());
    arrays.push_back({sources.back().raw_data(), t.numel(), static_cast<int>(t.dtype())});
  }
  const auto count = static_cast<int64_t>(arrays.size());
  const int64_t bytes = kernels::cuda::sum_of_squares_workspace_bytes(arrays.data(), count);
  // Freed into the caching allocator on return; later work on the stream runs after.
  const Tensor workspace = Tensor::empty({(bytes + 7) / 8}, DType::I64, device);
  Tensor total = Tensor::empty({}, DType::F64, device);
  kernels::cuda::sum_of_squares_multi_tensor(arrays.data(), count,
                                             static_cast<double*>(total.raw_data()),
                                             workspace.raw_data(), workspace.numel() * 8, nullptr);
  return total;
#else
  AUTOTP_FAIL("{}: tensors on {} need a build with the CUDA backend", op, device.str());
#endif
}

}  // namespace autotp::ops
