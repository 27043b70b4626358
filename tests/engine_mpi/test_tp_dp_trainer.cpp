// Tensor x data parallelism in the trainer under mpirun: every tp x dp split of the world with
// tp > 1 (tp dividing the toy Llama's 4 KV heads) at ZeRO 0/1/2 follows the one-process
// trajectory with the same global batch and keeps replicated parameters bit-identical;
// checkpoints saved at one layout resume exactly there and within tolerance at every other
// layout; a reshard round trip keeps every unsharded tensor of GQA- and fused-shaped weights;
// the HF export of a TP run equals the one-process export.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "autotp/apply_autotp.h"
#include "autotp/from_engine_config.h"
#include "core/comm/mpi_communicator.h"
#include "core/comm/parallel_grid.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/random.h"
#include "engine/checkpoint.h"
#include "engine/config.h"
#include "engine/distributed_checkpoint.h"
#include "engine/replica_check.h"
#include "engine/trainer.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/parallel/gather_params.h"
#include "layers/parallel/tensor_parallel_layer.h"
#include "layers/rms_norm.h"
#include "tests/engine_mpi/trainer_mpi_helpers.h"
#include "tests/support/mpi_test_env.h"

namespace autotp {
namespace {

using trainer_mpi_test::expect_trajectories_close;
using trainer_mpi_test::SharedDir;
using trainer_mpi_test::train;
using trainer_mpi_test::world;

namespace fs = std::filesystem;

const std::string kTokens = std::string(AUTOTP_TEST_DATA_DIR) + "/trajectory/tokens.bin";

// f64 runs differ from the one-process run only in the order of floating-point sums (TP
// all-reduces, DP averaging); 10 AdamW steps keep that far below this relative tolerance.
constexpr double kF64Tolerance = 1e-9;

struct Layout {
  int tp = 1, dp = 1;
  bool operator==(const Layout&) const = default;
  std::string str() const { return fmt::format("tp{}xdp{}", tp, dp); }
};

// Every split of the world into tp x dp with tp in {1, 2, 4} (the divisors of 4 KV heads).
std::vector<Layout> world_layouts() {
  std::vector<Layout> out;
  const int n = world()->size();
  for (int tp : {1, 2, 4}) {
    if (n % tp == 0) out.push_back({tp, n / tp});
  }
  return out;
}

// The layout checkpoints are saved at: tp 2 x dp 2 on 4 ranks, tp 2 x dp 1 on 2 ranks.
std::optional<Layout> saving_layout() {
  for (Layout l : world_layouts()) {
    if (l.tp == 2) return l;
  }
  return std::nullopt;
}

// One grid per TP size, built collectively in the same order on every rank.
std::shared_ptr<ParallelGrid> grid_for(int tp) {
  static std::map<int, std::shared_ptr<ParallelGrid>> grids;
  auto& g = grids[tp];
  if (!g) g = std::make_shared<ParallelGrid>(world(), tp);
  return g;
}

// The toy Llama: 8 query heads over 4 KV heads (head_dim 4), untied head. Global batch 8
// sequences of 16 tokens: micro-batch 2 x accumulation (4 / dp) x dp.
constexpr const char* kYaml = R"(train_micro_batch_size_per_gpu: 2
gradient_clipping: 1.0
optimizer:
  type: AdamW
  params: {lr: 0.02, betas: [0.9, 0.95], eps: 1.0e-8, weight_decay: 0.1}
scheduler:
  type: WarmupLR
  params: {warmup_min_lr: 0.001, warmup_max_lr: 0.02, warmup_num_steps: 4}
model:
  model_type: llama
  vocab_size: 64
  hidden_size: 32
  intermediate_size: 48
  num_hidden_layers: 2
  num_attention_heads: 8
  num_key_value_heads: 4
  max_position_embeddings: 64
  tie_word_embeddings: false
data: {type: tokens, dtype: uint16, seq_len: 16, seed: 77}
train: {steps: 10, seed: 5, log_interval: 1}
)";

// `l` on a grid (parallel) or one process (the reference, tp 1 x dp 1 without a grid).
Config make_config(Layout l, bool parallel, int zero, const std::string& out_dir,
                   std::vector<std::string> extra = {}) {
  ConfigLoadOptions o;
  o.overrides = {"data.path=" + kTokens, "train.out_dir=" + out_dir,
                 fmt::format("gradient_accumulation_steps={}", 4 / l.dp),
                 fmt::format("tensor_parallel.autotp_size={}", l.tp),
                 fmt::format("zero_optimization.stage={}", zero)};
  o.overrides.insert(o.overrides.end(), extra.begin(), extra.end());
  if (parallel) o.world_size = l.tp * l.dp;
  return parse_config(kYaml, o, "tp_dp_test.yaml");
}

TrainerOptions options(std::shared_ptr<ParallelGrid> grid) {
  TrainerOptions o;
  o.out = nullptr;
  o.dtype = DType::F64;
  o.export_hf = false;
  o.grid = std::move(grid);
  o.reduce_bucket_bytes = 4096;  // several buckets
  return o;
}

// The full (unsharded) parameters: collective over the TP group.
std::map<std::string, Tensor> full_parameters(Module& model) {
  std::vector<Module*> modules;
  for (const auto& [path, m] : model.named_modules())
    modules.push_back(m.get());
  GatherReplacedLayerParams gathered(modules);
  std::map<std::string, Tensor> out;
  for (const auto& [name, p] : model.named_parameters())
    out[name] = p.clone();
  return out;
}

double max_relative_diff(const std::map<std::string, Tensor>& got,
                         const std::map<std::string, Tensor>& want) {
  EXPECT_EQ(got.size(), want.size());
  double worst = 0.0;
  for (const auto& [name, w] : want) {
    const auto it = got.find(name);
    if (it == got.end()) {
      ADD_FAILURE() << name << " is missing";
      continue;
    }
    EXPECT_EQ(it->second.shape(), w.shape()) << name;
    if (it->second.shape() != w.shape()) continue;
    const std::vector<double> x = it->second.to_vector(), y = w.to_vector();
    for (size_t k = 0; k < x.size(); ++k)
      worst = std::max(worst, std::abs(x[k] - y[k]) / std::max(1.0, std::abs(y[k])));
  }
  return worst;
}

std::map<std::string, Tensor> parameters_of(Module& model) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, p] : model.named_parameters())
    out[name] = p;
  return out;
}

uint64_t fnv1a(uint64_t h, const Tensor& t) {
  const auto* bytes = static_cast<const uint8_t*>(t.raw_data());
  for (size_t i = 0; i < static_cast<size_t>(t.numel()) * t.itemsize(); ++i)
    h = (h ^ bytes[i]) * 1099511628211ULL;
  return h;
}

// Replicated parameters hash the same on every rank of the world; each rank's shards hash the
// same as those of every rank with its TP rank (its DP replicas).
void expect_replicas_bit_identical(Module& model, const ParallelGrid& grid) {
  const std::map<std::string, ShardedParameter> sharded = sharded_parameters(model);
  uint64_t replicated = 1469598103934665603ULL, local = replicated;
  int64_t replicated_count = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    local = fnv1a(local, p);
    if (sharded.count(name) == 0) {
      replicated = fnv1a(replicated, p);
      ++replicated_count;
    }
  }
  EXPECT_GT(replicated_count, 0);
  const uint64_t mine[3] = {static_cast<uint64_t>(grid.tp()->rank()), replicated, local};
  std::vector<uint8_t> bytes(sizeof mine);
  std::memcpy(bytes.data(), mine, sizeof mine);
  const auto all = world()->exchange_bytes(bytes);
  for (size_t r = 0; r < all.size(); ++r) {
    uint64_t theirs[3];
    std::memcpy(theirs, all[r].data(), sizeof theirs);
    EXPECT_EQ(theirs[1], replicated) << "rank " << r << "'s replicated parameters differ";
    if (theirs[0] == mine[0]) {
      EXPECT_EQ(theirs[2], local) << "rank " << r << " (same TP rank) holds other shards";
    }
  }
}

class TensorByDataParallel : public ::testing::TestWithParam<int> {};

TEST_P(TensorByDataParallel, FollowsTheOneProcessTrajectoryWithTheSameGlobalBatch) {
  const int zero = GetParam();
  bool any = false;
  for (Layout l : world_layouts()) {
    if (l.tp == 1) continue;  // tp 1 x dp N: tests/engine_mpi/test_dp_trainer.cpp
    any = true;
    SCOPED_TRACE(l.str());
    Trainer reference(make_config(Layout{}, false, 0, "unused"), options(nullptr));
    Trainer parallel(make_config(l, true, zero, "unused"), options(grid_for(l.tp)));
    const std::vector<StepRecord> want = train(reference, 10), got = train(parallel, 10);
    expect_trajectories_close(got, want, kF64Tolerance);
    EXPECT_LT(got.back().loss, got.front().loss);  // it trains
    EXPECT_LT(
        max_relative_diff(full_parameters(parallel.model()), parameters_of(reference.model())),
        kF64Tolerance);
    expect_replicas_bit_identical(parallel.model(), *grid_for(l.tp));
  }
  if (!any) GTEST_SKIP() << "no tp > 1 split of " << world()->size() << " ranks divides 4 KV heads";
}

INSTANTIATE_TEST_SUITE_P(ZeroStages, TensorByDataParallel, ::testing::Values(0, 1, 2),
                         [](const auto& info) { return fmt::format("zero{}", info.param); });

TEST(TensorByDataParallelCheckpoint, ResumesExactlyAtTheSameLayoutAndWithinToleranceAtOthers) {
  const std::optional<Layout> saved = saving_layout();
  if (!saved) GTEST_SKIP() << "no tp = 2 split of " << world()->size() << " ranks";
  SharedDir dir("tpdp", "resume");
  // 10 steps at the saving layout under ZeRO 2, checkpoints at 5 and 10, the HF export last.
  TrainerOptions full_options = options(grid_for(saved->tp));
  full_options.export_hf = true;
  Trainer full(make_config(*saved, true, 2, dir.sub("full"), {"train.checkpoint_interval=5"}),
               full_options);
  full.run();
  const std::vector<StepRecord> tail(full.history().begin() + 5, full.history().end());
  const std::map<std::string, Tensor> final_weights = full_parameters(full.model());
  if (world()->rank() == 0) {
    fs::create_directories(dir.sub("half/checkpoints"));
    fs::copy(dir.sub("full/checkpoints/step-00000005"), dir.sub("half/checkpoints/step-00000005"),
             fs::copy_options::recursive);
  }
  world()->barrier();
  const UnshardedCheckpoint ck =
      read_unsharded_checkpoint(dir.sub("half/checkpoints/step-00000005"));
  EXPECT_EQ(ck.layout(), fmt::format("tp 2 x dp {}, ZeRO stage 2", saved->dp));

  // The same layout continues bit for bit.
  {
    TrainerOptions resume = options(grid_for(saved->tp));
    resume.resume = true;
    resume.resume_dir = dir.sub("half");
    Trainer same(make_config(*saved, true, 2, "unused"), resume);
    ASSERT_EQ(same.current_step(), 5);
    const std::vector<StepRecord> got = train(same, 5);
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_EQ(got[i].loss, tail[i].loss) << "step " << i + 6;
    EXPECT_EQ(max_relative_diff(full_parameters(same.model()), final_weights), 0.0);
  }
  // Every other layout of this world (ZeRO 1 now), then one process: the same run, resharded.
  for (Layout l : world_layouts()) {
    if (l == *saved) continue;
    SCOPED_TRACE(l.str());
    TrainerOptions resume = options(grid_for(l.tp));
    resume.resume = true;
    resume.resume_dir = dir.sub("half");
    Trainer other(make_config(l, true, 1, "unused"), resume);
    ASSERT_EQ(other.current_step(), 5);
    expect_trajectories_close(train(other, 5), tail, kF64Tolerance);
    EXPECT_LT(max_relative_diff(full_parameters(other.model()), final_weights), kF64Tolerance);
  }
  TrainerOptions single = options(nullptr);
  single.resume = true;
  single.resume_dir = dir.sub("half");
  Trainer one(make_config(Layout{}, false, 0, "unused"), single);
  ASSERT_EQ(one.current_step(), 5);
  expect_trajectories_close(train(one, 5), tail, kF64Tolerance);
  EXPECT_LT(max_relative_diff(parameters_of(one.model()), final_weights), kF64Tolerance);

  // The HF export of the TP run holds the full weights, as a one-process run's export does.
  if (world()->rank() == 0) {
    TrainerOptions o = options(nullptr);
    o.export_hf = true;
    Trainer reference(make_config(Layout{}, false, 0, dir.sub("single")), o);
    reference.run();
    const auto tp_export = load_hf_model(dir.sub("full/hf"), DType::F64);
    const auto one_export = load_hf_model(dir.sub("single/hf"), DType::F64);
    EXPECT_EQ(tp_export->config(), one_export->config());
    EXPECT_LT(max_relative_diff(parameters_of(*tp_export), parameters_of(*one_export)),
              kF64Tolerance);
    EXPECT_EQ(max_relative_diff(parameters_of(*tp_export), final_weights), 0.0);
  }
}

TEST(TensorByDataParallelCheckpoint, AMissingShardOrAMissingManifestIsNamed) {
  const std::optional<Layout> saved = saving_layout();
  if (!saved) GTEST_SKIP() << "no tp = 2 split of " << world()->size() << " ranks";
  SharedDir dir("tpdp", "partial");
  Trainer run(make_config(*saved, true, 0, dir.sub("run"),
                          {"train.checkpoint_interval=2", "train.steps=4"}),
              options(grid_for(saved->tp)));
  run.run();
  const std::string step2 = dir.sub("run/checkpoints/step-00000002");
  const std::string step4 = dir.sub("run/checkpoints/step-00000004");
  if (world()->rank() == 0) {
    fs::remove(step4 + "/state.json");  // a rank died before the manifest was written
    fs::remove(step2 + "/model-tp00001-of-00002.safetensors");
  }
  world()->barrier();
  EXPECT_EQ(incomplete_checkpoints(dir.sub("run")), std::vector<std::string>{step4});
  EXPECT_EQ(latest_training_checkpoint(dir.sub("run")), std::optional<std::string>(step2));
  EXPECT_ERROR_CONTAINING(read_unsharded_checkpoint(step4), {"state.json is missing"});
  EXPECT_ERROR_CONTAINING(read_unsharded_checkpoint(step2),
                          {"model-tp00001-of-00002.safetensors (the weights of TP rank 1 of 2) "
                           "is missing"});
}

TEST(TensorByDataParallel, AReplicaThatDivergedIsNamedByTheReplicaCheck) {
  const std::optional<Layout> l = saving_layout();
  if (!l) GTEST_SKIP() << "no tp = 2 split of " << world()->size() << " ranks";
  Trainer t(make_config(*l, true, 0, "unused"), options(grid_for(l->tp)));
  t.step();
  EXPECT_NO_THROW(check_replicas_identical(t.model(), *grid_for(l->tp), "after step 1"));
  // One rank's copy of a replicated norm weight drifts by one ulp.
  if (world()->rank() == world()->size() - 1) {
    const Tensor w = t.model().get_submodule("model.norm")->parameter("weight");
    NoGradGuard no_grad;
    w.copy_(ops::mul(w, 1.0 + 1e-15));
  }
  EXPECT_ERROR_CONTAINING(check_replicas_identical(t.model(), *grid_for(l->tp), "after step 1"),
                          {"replica check after step 1: 'model.norm.weight' (replicated) differs"});
}

// ---- a reshard round trip on a model with fused and GQA-shaped weights ----------------------

constexpr int64_t kHidden = 16, kHeads = 8, kKvHeads = 4, kHeadDim = 2, kFfn = 24;

// One block's parameters as a fused-QKV architecture names them (no forward: the round trip
// needs parameters and optimizer state only).
class FusedBlock : public Module {
 public:
  FusedBlock() {
    constexpr DType f64 = DType::F64;
    register_module("qkv_proj", std::make_shared<Linear>(
                                    kHidden, (kHeads + 2 * kKvHeads) * kHeadDim, true, f64));
    register_module("o_proj", std::make_shared<Linear>(kHeads * kHeadDim, kHidden, false, f64));
    register_module("gate_up_proj", std::make_shared<Linear>(kHidden, 2 * kFfn, false, f64));
    register_module("down_proj", std::make_shared<Linear>(kFfn, kHidden, false, f64));
    register_module("norm", std::make_shared<RMSNorm>(kHidden, 1e-6, f64));
  }
  std::string type_name() const override { return "FusedBlock"; }
};

class FusedNet : public Module {
 public:
  explicit FusedNet(int blocks = 1) {
    auto layers = register_module("layers", std::make_shared<ModuleList>());
    for (int b = 0; b < blocks; ++b)
      layers->push_back(std::make_shared<FusedBlock>());
    Generator gen(7);
    for (const auto& [name, p] : named_parameters())
      init::normal_(p, 0.5, gen);
  }
  std::string type_name() const override { return "FusedNet"; }
};

constexpr const char* kFusedSpecs = R"(train_micro_batch_size_per_gpu: 1
data: {type: synthetic, seq_len: 4, vocab_size: 8}
train: {steps: 1}
tensor_parallel:
  partition_config:
    strict_mode: true
    layer_specs:
      - patterns: [".*\\.qkv_proj\\.(weight|bias)$"]
        partition_type: column
        shape: [[16, 8, 8], -1]
      - patterns: [".*\\.gate_up_proj\\.weight$"]
        partition_type: column
        shape: [2, -1]
      - patterns: [".*\\.(o_proj|down_proj)\\.weight$"]
        partition_type: row
)";

// A FusedNet of `blocks` blocks sharded at `l` with one AdamW step taken on gradient =
// parameter (so the moments are non-trivial and identical in every layout); ZeRO 2 over DP when
// dp > 1 (or `zero` says so).
struct ShardedFusedNet {
  FusedNet net;
  std::unique_ptr<AdamW> adamw;
  std::unique_ptr<ZeroAdamW> zero;

  explicit ShardedFusedNet(Layout l, int blocks = 1, bool zero_at_dp1 = false) : net(blocks) {
    const std::shared_ptr<ParallelGrid> grid = grid_for(l.tp);
    if (l.tp > 1) {
      AutoTPConfig c =
          autotp_config_from(parse_config(kFusedSpecs, {}, "fused.yaml").tensor_parallel);
      c.tp_size = l.tp;
      c.training = true;
      const ModelDims dims{"fusednet", kHidden, kHeads, kKvHeads, kHeadDim, false};
      apply_autotp(net, c, dims, grid->tp(), ApplyOptions{/*print_warnings=*/false});
    }
    AdamWOptions o;
    o.lr = 0.1;
    adamw = std::make_unique<AdamW>(net.named_parameters(), o);
    for (const auto& [name, p] : net.named_parameters())
      p.set_grad(p.detach().clone());
    if (l.dp > 1 || zero_at_dp1) {
      zero = std::make_unique<ZeroAdamW>(net.named_parameters(), o, 2, grid->dp(), 1024);
      zero->reduce_gradients();
      zero->step();
    } else {
      adamw->step();
    }
  }
};

TEST(TensorParallelCheckpoint, AReshardRoundTripKeepsEveryUnshardedTensorOfFusedAndGqaWeights) {
  const std::optional<Layout> a = saving_layout();
  if (!a) GTEST_SKIP() << "no tp = 2 split of " << world()->size() << " ranks";
  const Layout b = a->dp > 1 ? Layout{world()->size(), 1} : Layout{1, world()->size()};
  SharedDir dir("tpdp", "reshard");
  TrainingState state;
  state.step = 1;
  const std::string first = dir.sub("a/checkpoints/step-00000001");
  const std::string second = dir.sub("b/checkpoints/step-00000001");
  {
    ShardedFusedNet at_a(*a);
    EXPECT_EQ(sharded_parameters(at_a.net).size(), 5u);  // qkv weight+bias, gate_up, o, down
    save_distributed_checkpoint(dir.sub("a"), at_a.net, *at_a.adamw, at_a.zero.get(), state,
                                *grid_for(a->tp));
  }
  {
    ShardedFusedNet at_b(b);  // its own step is overwritten by the load
    load_any_training_checkpoint(first, at_b.net, *at_b.adamw, at_b.zero.get());
    save_distributed_checkpoint(dir.sub("b"), at_b.net, *at_b.adamw, at_b.zero.get(), state,
                                *grid_for(b.tp));
  }
  const UnshardedCheckpoint x = read_unsharded_checkpoint(first);
  const UnshardedCheckpoint y = read_unsharded_checkpoint(second);
  EXPECT_EQ(x.layout(), fmt::format("tp 2 x dp {}, ZeRO stage {}", a->dp, a->dp > 1 ? 2 : 0));
  EXPECT_EQ(y.layout(), fmt::format("tp {} x dp {}, ZeRO stage {}", b.tp, b.dp, b.dp > 1 ? 2 : 0));
  std::map<std::string, Tensor> xw(x.weights.begin(), x.weights.end());
  std::map<std::string, Tensor> yw(y.weights.begin(), y.weights.end());
  EXPECT_EQ(max_relative_diff(yw, xw), 0.0);  // bit for bit
  ASSERT_EQ(x.adamw.size(), y.adamw.size());
  for (const auto& [name, s] : x.adamw) {
    ASSERT_EQ(y.adamw.count(name), 1u) << name;
    EXPECT_EQ(y.adamw.at(name).step, s.step) << name;
    EXPECT_EQ(max_relative_diff({{name, y.adamw.at(name).exp_avg}}, {{name, s.exp_avg}}), 0.0);
    EXPECT_EQ(max_relative_diff({{name, y.adamw.at(name).exp_avg_sq}}, {{name, s.exp_avg_sq}}),
              0.0);
  }
  // And the unsharded tensors are the one-process step's.
  ShardedFusedNet reference(Layout{});
  EXPECT_LT(max_relative_diff(xw, parameters_of(reference.net)), 1e-12);
  for (size_t i = 0; i < reference.adamw->params().size(); ++i) {
    const std::string& name = reference.adamw->params()[i].first;
    EXPECT_LT(max_relative_diff({{name, x.adamw.at(name).exp_avg}},
                                {{name, reference.adamw->state(i).exp_avg}}),
              1e-12);
  }
}

// The loader reads one parameter at a time: a checkpoint of a 3-block FusedNet saved at tp 2 x
// dp 2 under ZeRO 2 (tp 2 x dp 1 on 2 ranks) loaded at the same layout, at tp = world, at tp 1 x
// dp = world (ZeRO 2) and into one unsharded model gives every rank what the full
// materialization (read_unsharded_checkpoint + load_unsharded_checkpoint) gives, bit for bit,
// while the bytes of read tensor data alive at once stay within the largest parameter's
// unsharded size plus its two moments (3 x its f64 bytes).
TEST(TensorParallelCheckpoint, LoadingHoldsOneParameterAtATimeAndEqualsTheFullReadBitForBit) {
  const std::optional<Layout> a = saving_layout();
  if (!a) GTEST_SKIP() << "no tp = 2 split of " << world()->size() << " ranks";
  constexpr int kBlocks = 3;
  SharedDir dir("tpdp", "bounded");
  TrainingState state;
  state.step = 1;
  {
    ShardedFusedNet at_a(*a, kBlocks, /*zero_at_dp1=*/true);
    save_distributed_checkpoint(dir.sub("a"), at_a.net, *at_a.adamw, at_a.zero.get(), state,
                                *grid_for(a->tp));
  }
  const std::string ckpt = dir.sub("a/checkpoints/step-00000001");

  // The bound and the full total, from the unsharded model (f64: 8 bytes an element).
  const FusedNet full_net(kBlocks);
  int64_t largest = 0, total = 0;
  for (const auto& [name, p] : full_net.named_parameters()) {
    largest = std::max(largest, p.numel());
    total += p.numel();
  }
  const int64_t bound = 3 * largest * 8, full_total = 3 * total * 8;
  ASSERT_LT(5 * bound, full_total);  // the bound says something: well below everything
  const UnshardedCheckpoint materialized = read_unsharded_checkpoint(ckpt);
  ASSERT_EQ(materialized.weights.size(), full_net.named_parameters().size());
  ASSERT_EQ(materialized.adamw.size(), full_net.named_parameters().size());

  const auto expect_same = [](const Tensor& got, const Tensor& want, const std::string& what) {
    ASSERT_TRUE(got.defined() && want.defined()) << what;
    EXPECT_EQ(got.shape(), want.shape()) << what;
    EXPECT_EQ(got.to_vector(), want.to_vector()) << what;  // bit for bit (f64 compared exactly)
  };
  for (const Layout l : {*a, Layout{world()->size(), 1}, Layout{1, world()->size()}, Layout{}}) {
    const std::string label = l == Layout{} ? "one process" : l.str();
    SCOPED_TRACE(label);
    ShardedFusedNet bounded(l, kBlocks), full(l, kBlocks);
    CheckpointReadStats stats;
    const TrainingState got = load_any_training_checkpoint(ckpt, bounded.net, *bounded.adamw,
                                                           bounded.zero.get(), nullptr, &stats);
    EXPECT_EQ(got.step, 1);
    load_unsharded_checkpoint(materialized, ckpt, full.net, full.adamw.get(), full.zero.get());
    fmt::print(
        "[ rank {} ] load at {}: peak {} bytes held (bound {}; full model + moments {}), "
        "{} bytes read\n",
        world()->rank(), label, stats.peak_bytes_held, bound, full_total, stats.bytes_read);
    EXPECT_GT(stats.peak_bytes_held, 0);
    EXPECT_LE(stats.peak_bytes_held, bound);
    EXPECT_GT(stats.bytes_read, 0);

    const NamedTensors& params = bounded.adamw->params();
    for (size_t i = 0; i < params.size(); ++i)
      expect_same(params[i].second, full.adamw->params()[i].second, params[i].first);
    // Weights only (eval, export): the same weights, and no byte of the moments read: at most
    // this rank's share of the weights' bytes, which the load with moments read besides them.
    ShardedFusedNet weights_only(l, kBlocks);
    CheckpointReadStats weight_stats;
    EXPECT_EQ(load_checkpoint_weights(ckpt, weights_only.net, &weight_stats).step, 1);
    for (size_t i = 0; i < params.size(); ++i)
      expect_same(weights_only.adamw->params()[i].second, params[i].second, params[i].first);
    EXPECT_GT(weight_stats.bytes_read, 0);
    EXPECT_LE(weight_stats.bytes_read, total * 8);
    EXPECT_LT(weight_stats.bytes_read, stats.bytes_read);
    if (bounded.zero) {
      EXPECT_EQ(bounded.zero->step_count(), full.zero->step_count());
      expect_same(bounded.zero->exp_avg(), full.zero->exp_avg(), "ZeRO exp_avg");
      expect_same(bounded.zero->exp_avg_sq(), full.zero->exp_avg_sq(), "ZeRO exp_avg_sq");
      continue;
    }
    for (size_t i = 0; i < params.size(); ++i) {
      const AdamWParamState &x = bounded.adamw->state(i), &y = full.adamw->state(i);
      EXPECT_EQ(x.step, y.step) << params[i].first;
      expect_same(x.exp_avg, y.exp_avg, params[i].first + ".exp_avg");
      expect_same(x.exp_avg_sq, y.exp_avg_sq, params[i].first + ".exp_avg_sq");
    }
  }
}

}  // namespace
}  // namespace autotp
