// Counter-based random fills (Philox-4x32-10): element i of a fill drawn at generator offset
// o takes the value f(seed, o + i). Same seed and offset give the same numbers on CPU, GPU and
// every rank, whatever order the draws happen in.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace autotp {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0, uint64_t offset = 0) : seed_(seed), offset_(offset) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t offset) { offset_ = offset; }
  // Reserves `count` counters and returns the first (the fills below call it).
  uint64_t advance(uint64_t count) {
    const uint64_t first = offset_;
    offset_ += count;
    return first;
  }

 private:
  uint64_t seed_;
  uint64_t offset_;
};

// Fills `t` (any floating dtype, contiguous) from counters [offset, offset + numel).
void fill_uniform(const Tensor& t, uint64_t seed, uint64_t offset, double lo = 0.0,
                  double hi = 1.0);
void fill_normal(const Tensor& t, uint64_t seed, uint64_t offset, double mean = 0.0,
                 double std = 1.0);
// Same, drawing the next numel counters from `gen`.
void fill_uniform(const Tensor& t, Generator& gen, double lo = 0.0, double hi = 1.0);
void fill_normal(const Tensor& t, Generator& gen, double mean = 0.0, double std = 1.0);

// New tensors filled from `gen`.
Tensor rand(const Shape& shape, Generator& gen, DType dtype = DType::F32,
            Device device = Device::cpu());
Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::F32,
             Device device = Device::cpu());

}  // namespace autotp
