// Philox fills: computed on the host for CPU tensors and by kernels/cuda/random.h on GPUs;
// both evaluate the same kernels/philox.h function per element.
#include "core/random.h"

#include <cmath>
#include <limits>
#include <optional>
#include <type_traits>

#include "core/dispatch.h"
#include "kernels/philox.h"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/random.h"
#endif

namespace autotp {

namespace {

// The largest value of T below x (x finite): one unit in the last place toward -inf.
template <typename T>
T next_below(T x) {
  if constexpr (std::is_floating_point_v<T>) {
    return std::nextafter(x, -std::numeric_limits<T>::infinity());
  } else if constexpr (kIsHalfType<T>) {  // bf16 / f16: sign-magnitude bits
    const float f = static_cast<float>(x);
    T out = x;
    out.bits = f > 0.0f   ? static_cast<uint16_t>(x.bits - 1)
               : f < 0.0f ? static_cast<uint16_t>(x.bits + 1)
                          : static_cast<uint16_t>(0x8001);  // below zero: -smallest subnormal
    return out;
  } else {
    return x;  // integer dtypes are rejected before any fill
  }
}

// `value_at(i)` in double, stored as T. With `below` set, a value that rounding to T lifted
// up to `below` or beyond (u < hi can round to hi in f32 or bf16) steps down below it.
template <typename Fn>
void fill_with(const Tensor& t, const char* what, Fn&& value_at,
               std::optional<double> below = std::nullopt) {
  AUTOTP_CHECK(t.defined() && t.is_contiguous(), "{}: needs a defined, contiguous tensor", what);
  AUTOTP_CHECK(is_floating(t.dtype()), "{}: dtype {} is not a floating type", what,
               dtype_name(t.dtype()));
  dispatch_any(t.dtype(), [&]<typename T>(TypeTag<T>) {
    T* p = static_cast<T*>(t.raw_data());
    for (int64_t i = 0; i < t.numel(); ++i) {
      T v = convert_value<T>(value_at(static_cast<uint64_t>(i)));
      if (below && convert_value<double>(v) >= *below) v = next_below(v);
      p[i] = v;
    }
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
  fill_with(
      t, "fill_uniform", [&](uint64_t i) { return philox::uniform(seed, offset + i, lo, hi); },
      hi > lo ? std::optional<double>(hi) : std::nullopt);
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
