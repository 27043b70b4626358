// AutoTP's guards under mpirun: the first-step batch check, more ranks than KV heads, a config
// that differs between ranks, a TP group inside a TP x DP grid, and the HF export of a sharded
// run (gathered) equal to the unsharded run's.
#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>

#include "autotp/batch_check.h"
#include "engine/checkpoint.h"
#include "engine/optimizer.h"
#include "layers/parallel/gather_params.h"
#include "tests/autotp/mpi/autotp_mpi_helpers.h"

namespace autotp {
namespace {

using testing::build_model;
using testing::kTpTolerance;
using testing::shard;
using testing::test_world;
using testing::token_batch;

TEST(AutoTPChecks, TheBatchCheckPassesForEqualBatchesAndNamesTheFixOtherwise) {
  auto tp = test_world();
  check_tp_batch_consistency(token_batch(37, 4), *tp);
  const Tensor mine = token_batch(37, tp->rank() == 1 ? 5 : 4);
  EXPECT_ERROR_CONTAINING(check_tp_batch_consistency(mine, *tp),
                          {"tensor-parallel ranks 1 of group 'world' got a different batch than "
                           "TP rank 0",
                           "shard the data loader by data-parallel rank (world rank / tp_size), "
                           "not by world rank"});
  // A different shape is caught too.
  EXPECT_ERROR_CONTAINING(
      check_tp_batch_consistency(token_batch(37, 4, tp->rank() == 0 ? 2 : 3), *tp),
      {"got a different batch"});
}

TEST(AutoTPChecks, MoreRanksThanKvHeadsIsAnErrorThatSaysAutotpDoesNotIdleRanks) {
  auto tp = test_world();
  ModelConfig cfg = testing::toy_config("llama");
  cfg.num_key_value_heads = 2;
  auto model = build_model(cfg);
  if (tp->size() <= 2) {
    EXPECT_NO_THROW(shard(*model, tp));
    return;
  }
  EXPECT_ERROR_CONTAINING(shard(*model, tp), {"num_key_value_heads 2 <",
                                              "autotp does not leave ranks idle as "
                                              "DeepSpeed does"});
  EXPECT_EQ(model->get_submodule("model.layers.0.self_attn.k_proj")->type_name(), "Linear");
}

TEST(AutoTPChecks, UnevenShardsInTrainingFailOnEveryRankBeforeAnythingIsReplaced) {
  auto tp = test_world();
  if (tp->size() != 3) GTEST_SKIP() << "4 KV heads split unevenly over 3 ranks only";
  auto model = build_model(testing::toy_config("llama"));
  AutoTPConfig c;
  c.tp_size = 3;
  EXPECT_ERROR_CONTAINING(apply_autotp(*model, c, model_dims(model->config()), tp, {false}),
                          {"does not split evenly over autotp_size 3",
                           "divides "
                           "num_key_value_heads 4"});
}

TEST(AutoTPChecks, AGroupSizeThatDiffersFromAutotpSizeIsAnError) {
  auto tp = test_world();
  auto model = build_model(testing::toy_config("llama"));
  AutoTPConfig c;
  c.tp_size = tp->size() * 2;
  EXPECT_ERROR_CONTAINING(apply_autotp(*model, c, model_dims(model->config()), tp, {false}),
                          {"autotp_size is", "but the tensor-parallel group has"});
}

TEST(AutoTPChecks, RanksThatPlanDifferentlyAllFailInsteadOfHanging) {
  auto tp = test_world();
  auto model = build_model(testing::toy_config("llama"));
  AutoTPConfig c;
  if (tp->rank() == 1) c.preset_model = "mistral";  // same decisions, other rule text: fine
  if (tp->rank() == tp->size() - 1) {
    c.has_partition_config = true;
    c.use_default_specs = false;
    c.layer_specs = {make_spec({R"(.*\.mlp\.(gate|up)_proj\.weight$)"}, SpecType::Column, "x"),
                     make_spec({R"(.*\.mlp\.down_proj\.weight$)"}, SpecType::Row, "y")};
  }
  EXPECT_ERROR_CONTAINING(shard(*model, tp, c), {"computed a different plan than rank 0"});
}

TEST(AutoTPChecks, ShardingTheTpGroupOfATpByDpGridEqualsTheUnshardedModel) {
  auto world = test_world();
  if (world->size() != 4) GTEST_SKIP() << "TP=2 x DP=2 needs 4 ranks";
  ParallelGrid grid(world, 2);
  auto model = build_model(testing::toy_config("qwen2"));
  const auto ref = build_model(testing::toy_config("qwen2"));
  AutoTPConfig c;
  c.tp_size = 2;
  const AutoTPResult r = apply_autotp(*model, c, grid, {false});
  EXPECT_EQ(r.replaced_layers, 14);
  // Each DP replica reads its own batch; within a TP group the batches agree.
  const Tensor ids = token_batch(37, grid.data_parallel_rank());
  check_tp_batch_consistency(ids, *grid.tp());
  EXPECT_ALL_CLOSE(model->forward(ids), ref->forward(ids), kTpTolerance);
}

// All TP layers of `model`, for gathering their full parameters.
std::vector<Module*> tp_layers(Module& model) {
  std::vector<Module*> out;
  for (const auto& [name, m] : model.named_modules()) {
    if (dynamic_cast<TensorParallelLayer*>(m.get()) != nullptr) out.push_back(m.get());
  }
  return out;
}

TEST(AutoTPChecks, AnHfExportOfATrainedShardedModelEqualsTheUnshardedExport) {
  auto tp = test_world();
  const ModelConfig cfg = testing::toy_config("qwen3", /*tied=*/true);
  auto model = build_model(cfg);
  const auto ref = build_model(cfg);
  const AutoTPResult r = shard(*model, tp);
  ASSERT_NE(r.grad_allreduce, nullptr) << "the TP pass made no gradient all-reduce";
  AdamWOptions opts;
  opts.lr = 1e-2;
  AdamW opt_ref(ref->named_parameters(), opts), opt(model->named_parameters(), opts);
  for (int step = 0; step < 2; ++step) {
    const Tensor ids = token_batch(cfg.vocab_size, step);
    ref->forward_loss(ids, ids).backward();
    model->forward_loss(ids, ids).backward();
    r.grad_allreduce->all_reduce_grads();
    opt_ref.step();
    opt.step();
    opt_ref.zero_grad();
    opt.zero_grad();
  }
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    fmt::format("autotp_tp_export_{}_{}", ::getpid(), tp->rank());
  std::filesystem::remove_all(dir);
  {
    GatherReplacedLayerParams gathered(tp_layers(*model));
    export_hf_model(*model, (dir / "tp").string());
  }
  export_hf_model(*ref, (dir / "ref").string());
  const auto tp_loaded = load_hf_model((dir / "tp").string(), DType::F64);
  const auto ref_loaded = load_hf_model((dir / "ref").string(), DType::F64);
  EXPECT_EQ(tp_loaded->config(), ref_loaded->config());
  testing::expect_same_parameters(*tp_loaded, *ref_loaded, /*grads=*/false);
  // Gathering restored the shards: the sharded model still matches the reference.
  testing::expect_same_parameters(*model, *ref, /*grads=*/false);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace autotp
