// Shared pieces of the AutoTP MPI tests: f64 toy models built twice from one seed (the TP=1
// reference and the one to shard), the pass with test defaults, token batches, and gathering
// a sharded model's gradients and weights back to full tensors by parameter name.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>

#include "autotp/apply_autotp.h"
#include "core/ops.h"
#include "layers/parallel/tensor_parallel_layer.h"
#include "models/registry.h"
#include "tests/autotp/arch_layouts.h"
#include "tests/support/mpi_test_env.h"
#include "tests/support/tolerances.h"

namespace autotp::testing {

inline constexpr uint64_t kSeed = 1234;

// f64 throughout, so TP=N and TP=1 differ only by the order of floating-point sums (the
// row all-reduce, the column input-gradient all-reduce): far inside the f64 tolerance.
inline const Tolerance kTpTolerance = tolerance_for(DType::F64);

inline std::shared_ptr<CausalLM> build_model(const ModelConfig& config) {
  return create_model(config, kSeed, DType::F64);
}

// The pass over `tp` (its whole group), uneven shards allowed at TP=3 (4 KV heads over 3).
inline AutoTPResult shard(Module& model, const ModelDims& dims,
                          const std::shared_ptr<Communicator>& tp, AutoTPConfig config = {}) {
  config.tp_size = tp->size();
  config.allow_uneven = config.allow_uneven || tp->size() == 3;
  return apply_autotp(model, config, dims, tp, ApplyOptions{/*print_warnings=*/false});
}
inline AutoTPResult shard(CausalLM& model, const std::shared_ptr<Communicator>& tp,
                          AutoTPConfig config = {}) {
  return shard(model, model_dims(model.config()), tp, std::move(config));
}

// Token ids [batch, seq] in [0, vocab), different per `step`.
inline Tensor token_batch(int64_t vocab, int step, int64_t batch = 2, int64_t seq = 5) {
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < batch * seq; ++i)
    ids.push_back((i * 7 + step * 11 + 3 + i * i) % vocab);
  return Tensor::from_vector_i64(ids, {batch, seq});
}

// The TensorParallelLayer owning parameter `name` of `model`, or nullptr.
inline TensorParallelLayer* owning_tp_layer(Module& model, const std::string& name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) return nullptr;
  return dynamic_cast<TensorParallelLayer*>(model.get_submodule(name.substr(0, dot)).get());
}

// The full tensor of `local` (parameter `name`'s shard, or its gradient), gathered over the
// TP group when the parameter is sharded.
inline Tensor full_tensor(Module& model, const std::string& name, const Tensor& local) {
  TensorParallelLayer* layer = owning_tp_layer(model, name);
  if (layer == nullptr) return local;
  const ParamSplitInfo& info = layer->split_info(name.substr(name.rfind('.') + 1));
  if (!info.tensor_model_parallel) return local;
  return gather_full(*layer->tp_group(), local, info.plan).reshape(info.original_shape);
}

// Every parameter (or its gradient) of `sharded`, gathered, equals `reference`'s of the same
// name within `tol`; the names are the same in both.
inline void expect_same_parameters(Module& sharded, Module& reference, bool grads,
                                   Tolerance tol = kTpTolerance) {
  std::map<std::string, Tensor> ref;
  for (const auto& [n, p] : reference.named_parameters())
    ref[n] = p;
  const auto named = sharded.named_parameters();
  ASSERT_EQ(named.size(), ref.size());
  for (const auto& [name, p] : named) {
    ASSERT_EQ(ref.count(name), 1u) << name << " is not a parameter of the reference";
    const Tensor expected = grads ? ref[name].grad() : ref[name];
    const Tensor local = grads ? p.grad() : p;
    ASSERT_TRUE(local.defined()) << name << (grads ? " has no gradient" : " is undefined");
    EXPECT_TRUE(all_close(full_tensor(sharded, name, local), expected, tol, name));
  }
}

// Each rank's bytes of `t` (read on the host) equal rank 0's.
inline bool identical_on_every_rank(Communicator& comm, const Tensor& t) {
  const std::vector<double> v = t.to_vector();
  std::vector<uint8_t> bytes(v.size() * sizeof(double));
  std::memcpy(bytes.data(), v.data(), bytes.size());
  const auto all = comm.exchange_bytes(bytes);
  for (const auto& b : all) {
    if (b != all[0]) return false;
  }
  return true;
}

}  // namespace autotp::testing
