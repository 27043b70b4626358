// Initialization fills and the HF default scheme, visiting modules in registration order.
#include "layers/init.h"

#include "core/autograd/grad_mode.h"
#include "layers/embedding.h"
#include "layers/layer_norm.h"
#include "layers/linear.h"
#include "layers/rms_norm.h"

namespace autotp::init {

namespace {
// Runs a contiguous fill on `t`, through a temporary when `t` is a strided view.
template <typename Fill>
void fill_via_contiguous(const Tensor& t, Fill&& fill) {
  NoGradGuard no_grad;
  const Tensor target = t.detach();
  if (target.is_contiguous()) {
    fill(target);
    return;
  }
  Tensor tmp = Tensor::empty(target.shape(), target.dtype(), target.device());
  fill(tmp);
  target.copy_(tmp);
}

void init_one(Module& m, Generator& gen, double std) {
  if (auto* linear = dynamic_cast<Linear*>(&m)) {
    normal_(linear->weight(), std, gen);
    if (linear->has_bias()) zeros_(linear->bias());
  } else if (auto* embedding = dynamic_cast<Embedding*>(&m)) {
    normal_(embedding->weight(), std, gen);
  } else if (auto* rms = dynamic_cast<RMSNorm*>(&m)) {
    ones_(rms->weight());
  } else if (auto* ln = dynamic_cast<LayerNorm*>(&m)) {
    ones_(ln->weight());
    if (ln->has_bias()) zeros_(ln->bias());
  }
}
}  // namespace

void normal_(const Tensor& t, double std, Generator& gen, double mean) {
  AUTOTP_CHECK(std >= 0.0, "init::normal_: std ({}) must not be negative", std);
  fill_via_contiguous(t, [&](const Tensor& c) { fill_normal(c, gen, mean, std); });
}

void uniform_(const Tensor& t, double lo, double hi, Generator& gen) {
  AUTOTP_CHECK(lo <= hi, "init::uniform_: lo ({}) exceeds hi ({})", lo, hi);
  fill_via_contiguous(t, [&](const Tensor& c) { fill_uniform(c, gen, lo, hi); });
}

void zeros_(const Tensor& t) {
  t.fill_(0.0);
}
void ones_(const Tensor& t) {
  t.fill_(1.0);
}

void init_weights_hf(Module& root, Generator& gen, double initializer_range) {
  AUTOTP_CHECK(initializer_range >= 0.0, "init_weights_hf: initializer_range ({}) is negative",
               initializer_range);
  init_one(root, gen, initializer_range);
  for (auto& [name, module] : root.named_modules())
    init_one(*module, gen, initializer_range);
}

}  // namespace autotp::init
