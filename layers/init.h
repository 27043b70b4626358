// Parameter initialization from the counter-based Philox Generator (core/random.h): fills for
// single tensors and the Hugging Face default scheme for a whole module tree. Deterministic.
#pragma once

#include "core/module.h"
#include "core/random.h"

namespace autotp::init {

// In-place fills (no autograd), drawing numel counters from `gen` (any strides).
void normal_(const Tensor& t, double std, Generator& gen, double mean = 0.0);
void uniform_(const Tensor& t, double lo, double hi, Generator& gen);
void zeros_(const Tensor& t);
void ones_(const Tensor& t);

// HF PreTrainedModel._init_weights for the layers in layers/: Linear weight ~ N(0, std) and
// bias 0; Embedding weight ~ N(0, std); RMSNorm/LayerNorm weight 1 and bias 0. Visits `root`
// then its descendants in named_modules() order, so a seed gives the same weights on every
// rank. Other modules are left as they are (add a case here for a new parametrized layer).
void init_weights_hf(Module& root, Generator& gen, double initializer_range = 0.02);

}  // namespace autotp::init
