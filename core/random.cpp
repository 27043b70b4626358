// Philox fills: computed on the host for CPU tensors and by kernels/cuda/random.h on GPUs;
// both evaluate the same kernels/philox.h function per element.
#include "core/random.h"

#include "core/dispatch.h"
#include "kernels/philox.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/random.h"
#endif

namespace autotp {

namespace {

template <typename Fn>
void fill_with(const Tensor& t, const char* what, Fn&& value_at) {
  AUTOTP_CHECK(t.defined() && t.is_contiguous(), "{}: needs a defined, contiguous tensor", what);
  AUTOTP_CHECK(is_floating(t.dtype()), "{}: dtype {} is not a floating type", what,
               dtype_name(t.dtype()));
  dispatch_any(t.dtype(), [&]<typename T>(TypeTag<T>) {
    T* p = static_cast<T*>(t.raw_data());
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = convert_value<T>(value_at(static_cast<uint64_t>(i)));
  });
}

}  // namespace

void fill_uniform(const Tensor& t, uint64_t seed, uint64_t offset, double lo, double hi) {
  if (t.device().is_cuda()) {
#ifdef AUTOTP_WITH_CUDA
    AUTOTP_CHECK(t.is_contiguous(), "fill_uniform: needs a contiguous tensor");
    kernels::cuda::fill_random(static_cast<int>(t.dtype()), t.raw_data(), t.numel(), seed, offset,
                               /*normal=*/false, lo, hi, nullptr);
    return;
#endif
  }
  fill_with(t, "fill_uniform",
            [&](uint64_t i) { return philox::uniform(seed, offset + i, lo, hi); });
}

void fill_normal(const Tensor& t, uint64_t seed, uint64_t offset, double mean, double std) {
  if (t.device().is_cuda()) {
#ifdef AUTOTP_WITH_CUDA
    AUTOTP_CHECK(t.is_contiguous(), "fill_normal: needs a contiguous tensor");
    kernels::cuda::fill_random(static_cast<int>(t.dtype()), t.raw_data(), t.numel(), seed, offset,
                               /*normal=*/true, mean, std, nullptr);
    return;
#endif
  }
  fill_with(t, "fill_normal",
            [&](uint64_t i) { return philox::normal(seed, offset + i, mean, std); });
}

void fill_uniform(const Tensor& t, Generator& gen, double lo, double hi) {
  fill_uniform(t, gen.seed(), gen.advance(static_cast<uint64_t>(t.numel())), lo, hi);
}

void fill_normal(const Tensor& t, Generator& gen, double mean, double std) {
  fill_normal(t, gen.seed(), gen.advance(static_cast<uint64_t>(t.numel())), mean, std);
}

Tensor rand(const Shape& shape, Generator& gen, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  fill_uniform(t, gen);
  return t;
}

Tensor randn(const Shape& shape, Generator& gen, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  fill_normal(t, gen);
  return t;
}

}  // namespace autotp
