// GatherReplacedLayerParams: gather on entry (undone if a later gather fails), restore on exit.
#include "layers/parallel/gather_params.h"

#include <cstdio>
#include <exception>

namespace autotp {

GatherReplacedLayerParams::GatherReplacedLayerParams(const std::vector<Module*>& modules,
                                                     bool enabled) {
  if (!enabled) return;
  try {
    for (Module* module : modules) {
      auto* layer = dynamic_cast<TensorParallelLayer*>(module);
      if (layer == nullptr) continue;
      layer->gather_params();
      gathered_.push_back(layer);
    }
  } catch (...) {
    restore();
    throw;
  }
}

GatherReplacedLayerParams::~GatherReplacedLayerParams() {
  restore();
}

void GatherReplacedLayerParams::restore() noexcept {
  for (auto it = gathered_.rbegin(); it != gathered_.rend(); ++it) {
    try {
      (*it)->partition_params();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "autotp: restoring the shards of %s failed: %s\n",
                   (*it)->describe().c_str(), e.what());
    }
  }
  gathered_.clear();
}

}  // namespace autotp
