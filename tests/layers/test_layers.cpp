// Layers: Linear/Embedding/RMSNorm/LayerNorm values against hand and naive-loop references,
// gradient checks through each layer's registered parameters, and initialization statistics.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/ops.h"
#include "layers/embedding.h"
#include "layers/init.h"
#include "layers/layer_norm.h"
#include "layers/linear.h"
#include "layers/rms_norm.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::random_f64;
using testing::tolerance_for;

const testing::Tolerance kExactSums{0.0, 0.0};  // integer-valued sums: exact

// ---- Linear -----------------------------------------------------------------------

TEST(Linear, ForwardMatchesAHandComputation) {
  Linear lin(3, 2);
  lin.weight().copy_(Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}));
  lin.bias().copy_(Tensor::from_vector({0.5, -1}, {2}));
  const Tensor x = Tensor::from_vector({1, 0, -1, 2, 1, 0}, {2, 3});
  // row 0: [1-3+0.5, 4-6-1] ; row 1: [2+2+0.5, 8+5-1]
  EXPECT_EQ(lin.forward(x).to_vector(), (std::vector<double>{-1.5, -3, 4.5, 12}));
  // Leading dims are kept: [2, 1, 3] -> [2, 1, 2].
  EXPECT_EQ(lin.forward(x.view({2, 1, 3})).shape(), (Shape{2, 1, 2}));
}

TEST(Linear, ForwardMatchesANaiveLoopOnOddShapes) {
  Linear lin(5, 3, true, DType::F64);
  Generator gen(11);
  init::normal_(lin.weight(), 1.0, gen);
  init::normal_(lin.bias(), 1.0, gen);
  const Tensor x = random_f64({7, 5}, 3, false);
  const std::vector<double> w = lin.weight().to_vector(), b = lin.bias().to_vector(),
                            xv = x.to_vector();
  std::vector<double> expected(7 * 3);
  for (int i = 0; i < 7; ++i) {
    for (int o = 0; o < 3; ++o) {
      double acc = b[o];
      for (int k = 0; k < 5; ++k)
        acc += xv[i * 5 + k] * w[o * 5 + k];
      expected[i * 3 + o] = acc;
    }
  }
  EXPECT_ALL_CLOSE(lin.forward(x), Tensor::from_vector(expected, {7, 3}, DType::F64),
                   tolerance_for(DType::F64));
}

TEST(Linear, WithoutBiasRegistersOnlyTheWeightAndRejectsAWrongInputWidth) {
  Linear lin(4, 6, /*bias=*/false);
  EXPECT_FALSE(lin.has_bias());
  EXPECT_FALSE(lin.bias().defined());
  ASSERT_EQ(lin.named_parameters().size(), 1u);
  EXPECT_EQ(lin.named_parameters()[0].first, "weight");
  EXPECT_EQ(lin.weight().shape(), (Shape{6, 4}));
  EXPECT_EQ(lin.to_string(), "Linear(in_features=4, out_features=6, bias=false)");
  try {
    lin.forward(Tensor::zeros({2, 5}));
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 5]"), std::string::npos) << e.what();
  }
}

TEST(Linear, GradcheckThroughTheRegisteredWeightAndBias) {
  Linear lin(5, 3, true, DType::F64);
  auto fn = [&](const std::vector<Tensor>& in) {
    lin.set_parameter("weight", in[1]);
    lin.set_parameter("bias", in[2]);
    return lin.forward(in[0]);
  };
  EXPECT_GRADCHECK(
      fn, (std::vector<Tensor>{random_f64({3, 5}, 1), random_f64({3, 5}, 2), random_f64({3}, 3)}));
}

TEST(Linear, BatchedInputGradientsMatchFiniteDifferences) {
  Linear lin(3, 5, false, DType::F64);
  auto fn = [&](const std::vector<Tensor>& in) {
    lin.set_parameter("weight", in[1]);
    return lin.forward(in[0]);
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{random_f64({2, 1, 3}, 4), random_f64({5, 3}, 5)}));
}

// ---- Embedding -------------------------------------------------------------------

TEST(Linear, ForwardAddTakesTheResidualIntoTheGemmLikeForwardThenAdd) {
  // Linear takes the residual into its GEMM; another UnaryModule adds after forward().
  Linear linear(5, 7, /*bias=*/true, DType::F64);
  linear.weight().copy_(random_f64({7, 5}, 103, false));
  linear.bias().copy_(random_f64({7}, 104, false));
  const Tensor x = random_f64({2, 5}, 105, false), r = random_f64({2, 7}, 106, false);
  EXPECT_ALL_CLOSE(linear.forward_add(x, r), ops::add(r, linear.forward(x)),
                   tolerance_for(DType::F64));
  RMSNorm norm(7, 1e-5, DType::F64);
  EXPECT_ALL_CLOSE(norm.forward_add(r, x.narrow(1, 0, 1)),
                   ops::add(x.narrow(1, 0, 1), norm.forward(r)), kExactSums);
}

TEST(Embedding, LooksUpRowsAndRejectsOutOfRangeIds) {
  Embedding emb(4, 2);
  emb.weight().copy_(Tensor::from_vector({0, 1, 10, 11, 20, 21, 30, 31}, {4, 2}));
  const Tensor ids = Tensor::from_vector_i64({3, 0, 3, 2}, {2, 2});
  const Tensor out = emb.forward(ids);
  EXPECT_EQ(out.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(out.to_vector(), (std::vector<double>{30, 31, 0, 1, 30, 31, 20, 21}));
  EXPECT_EQ(emb.to_string(), "Embedding(num_embeddings=4, embedding_dim=2)");
  try {
    emb.forward(Tensor::from_vector_i64({1, 4}, {2}));
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("id 4"), std::string::npos) << e.what();
  }
}

TEST(Embedding, GradcheckThroughTheWeightWithRepeatedIds) {
  Embedding emb(7, 3, DType::F64);
  const Tensor ids = Tensor::from_vector_i64({6, 2, 2, 0, 6, 5}, {2, 3});
  auto fn = [&](const std::vector<Tensor>& in) {
    emb.set_parameter("weight", in[0]);
    // A nonlinearity after the lookup so repeated rows must accumulate distinct gradients.
    return ops::mul(emb.forward(in[1]), emb.forward(in[1]));
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{random_f64({7, 3}, 6), ids}));
}

// ---- RMSNorm / LayerNorm ------------------------------------------------------------

// Naive per-row references, in double.
std::vector<double> rms_norm_reference(const std::vector<double>& x, const std::vector<double>& w,
                                       int64_t rows, int64_t d, double eps) {
  std::vector<double> out(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < d; ++i)
      ss += x[r * d + i] * x[r * d + i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(d) + eps);
    for (int64_t i = 0; i < d; ++i)
      out[r * d + i] = x[r * d + i] * inv * w[i];
  }
  return out;
}

std::vector<double> layer_norm_reference(const std::vector<double>& x, const std::vector<double>& w,
                                         const std::vector<double>& b, int64_t rows, int64_t d,
                                         double eps) {
  std::vector<double> out(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < d; ++i)
      mean += x[r * d + i];
    mean /= static_cast<double>(d);
    for (int64_t i = 0; i < d; ++i)
      var += (x[r * d + i] - mean) * (x[r * d + i] - mean);
    var /= static_cast<double>(d);
    for (int64_t i = 0; i < d; ++i) {
      out[r * d + i] = (x[r * d + i] - mean) / std::sqrt(var + eps) * w[i] + b[i];
    }
  }
  return out;
}

TEST(RMSNorm, NormalizesAHandExampleAndMatchesANaiveLoop) {
  RMSNorm norm(2, 0.0);
  // [3, 4]: mean square 12.5, so out = [3, 4] / sqrt(12.5).
  const Tensor hand = norm.forward(Tensor::from_vector({3, 4}, {1, 2}));
  EXPECT_ALL_CLOSE(hand, Tensor::from_vector({3 / std::sqrt(12.5), 4 / std::sqrt(12.5)}, {1, 2}),
                   tolerance_for(DType::F32));

  RMSNorm big(7, 1e-5, DType::F64);
  const Tensor w = random_f64({7}, 8, false);
  big.set_parameter("weight", w);
  const Tensor x = random_f64({3, 5, 7}, 9, false);
  EXPECT_ALL_CLOSE(
      big.forward(x),
      Tensor::from_vector(rms_norm_reference(x.to_vector(), w.to_vector(), 15, 7, 1e-5), {3, 5, 7},
                          DType::F64),
      tolerance_for(DType::F64));
  EXPECT_EQ(big.to_string(), "RMSNorm(dim=7, eps=1e-05)");
}

TEST(RMSNorm, GradcheckThroughTheRegisteredWeight) {
  RMSNorm norm(5, 1e-6, DType::F64);
  auto fn = [&](const std::vector<Tensor>& in) {
    norm.set_parameter("weight", in[1]);
    return norm.forward(in[0]);
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{random_f64({3, 5}, 10), random_f64({5}, 11)}));
}

TEST(LayerNorm, MatchesANaiveLoopWithWeightAndBias) {
  LayerNorm norm(7, 1e-5, true, DType::F64);
  const Tensor w = random_f64({7}, 12, false), b = random_f64({7}, 13, false);
  norm.set_parameter("weight", w);
  norm.set_parameter("bias", b);
  const Tensor x = random_f64({5, 7}, 14, false, -3.0, 2.0);
  EXPECT_ALL_CLOSE(norm.forward(x),
                   Tensor::from_vector(layer_norm_reference(x.to_vector(), w.to_vector(),
                                                            b.to_vector(), 5, 7, 1e-5),
                                       {5, 7}, DType::F64),
                   tolerance_for(DType::F64));
  LayerNorm plain(3, 1e-5, /*bias=*/false);
  EXPECT_EQ(plain.named_parameters().size(), 1u);
  // A fresh LayerNorm of [1, 2, 3]: mean 2, var 2/3.
  const double s = std::sqrt(2.0 / 3.0 + 1e-5);
  EXPECT_ALL_CLOSE(plain.forward(Tensor::from_vector({1, 2, 3}, {1, 3})),
                   Tensor::from_vector({-1 / s, 0, 1 / s}, {1, 3}), tolerance_for(DType::F32));
}

TEST(LayerNorm, GradcheckThroughTheRegisteredWeightAndBias) {
  LayerNorm norm(5, 1e-5, true, DType::F64);
  auto fn = [&](const std::vector<Tensor>& in) {
    norm.set_parameter("weight", in[1]);
    norm.set_parameter("bias", in[2]);
    return norm.forward(in[0]);
  };
  EXPECT_GRADCHECK(
      fn, (std::vector<Tensor>{random_f64({3, 5}, 15), random_f64({5}, 16), random_f64({5}, 17)}));
}

// ---- initialization ------------------------------------------------------------------

// Sample mean and standard deviation.
std::pair<double, double> mean_and_std(const std::vector<double>& v) {
  double mean = 0;
  for (double x : v)
    mean += x;
  mean /= static_cast<double>(v.size());
  double var = 0;
  for (double x : v)
    var += (x - mean) * (x - mean);
  return {mean, std::sqrt(var / static_cast<double>(v.size() - 1))};
}

TEST(Init, NormalFillHasTheRequestedStdWithinFourStandardErrors) {
  const double std = 0.02;
  const Tensor t = Tensor::empty({300, 200});
  Generator gen(1234);
  init::normal_(t, std, gen);
  const auto [mean, sample_std] = mean_and_std(t.to_vector());
  const double n = static_cast<double>(t.numel());
  // Standard errors of the mean (std / sqrt(n)) and of the std (std / sqrt(2n)).
  EXPECT_LT(std::fabs(mean), 4 * std / std::sqrt(n)) << mean;
  EXPECT_LT(std::fabs(sample_std - std), 4 * std / std::sqrt(2 * n)) << sample_std;
  EXPECT_EQ(gen.offset(), static_cast<uint64_t>(t.numel()));
}

TEST(Init, UniformFillStaysInRangeAndStridedViewsAreFilled) {
  const Tensor t = Tensor::zeros({4, 6});
  Generator gen(5);
  const Tensor view = t.transpose(0, 1).narrow(0, 1, 3);  // [3, 4], strided
  init::uniform_(view, 2.0, 3.0, gen);
  for (double v : view.to_vector()) {
    EXPECT_GE(v, 2.0);
    EXPECT_LT(v, 3.0);
  }
  // Only the viewed columns 1..3 were written.
  for (int64_t r = 0; r < 4; ++r) {
    EXPECT_EQ(t.select(0, r).select(0, 0).item(), 0.0);
    EXPECT_EQ(t.select(0, r).select(0, 5).item(), 0.0);
  }
}

// embed + two Linears + a norm, HF-named.
class TinyModel : public Module {
 public:
  TinyModel() {
    register_module("embed_tokens", std::make_shared<Embedding>(11, 5));
    register_module("up_proj", std::make_shared<Linear>(5, 7));
    register_module("down_proj", std::make_shared<Linear>(7, 5, false));
    register_module("norm", std::make_shared<LayerNorm>(5));
  }
  std::string type_name() const override { return "TinyModel"; }
};

TEST(Init, HfDefaultsAreDeterministicForASeedAndFollowHfRules) {
  TinyModel a, b, c;
  for (auto& [name, t] : c.named_parameters())
    t.fill_(7.0);  // init must overwrite everything
  Generator ga(42), gb(42), gc(43);
  init::init_weights_hf(a, ga, 0.5);
  init::init_weights_hf(b, gb, 0.5);
  init::init_weights_hf(c, gc, 0.5);
  for (const auto& [name, t] : a.state_dict()) {
    EXPECT_EQ(t.to_vector(), b.state_dict().at(name).to_vector()) << name;
  }
  EXPECT_NE(a.state_dict().at("up_proj.weight").to_vector(),
            c.state_dict().at("up_proj.weight").to_vector());
  EXPECT_EQ(c.state_dict().at("up_proj.bias").to_vector(), std::vector<double>(7, 0.0));
  EXPECT_EQ(c.state_dict().at("norm.weight").to_vector(), std::vector<double>(5, 1.0));
  EXPECT_EQ(c.state_dict().at("norm.bias").to_vector(), std::vector<double>(5, 0.0));
  // Draws happen in registration order: embed (55), up (35), down (35) counters.
  EXPECT_EQ(ga.offset(), 55u + 35u + 35u);
  Generator replay(42);
  const Tensor embed = Tensor::empty({11, 5});
  init::normal_(embed, 0.5, replay);
  EXPECT_EQ(embed.to_vector(), a.state_dict().at("embed_tokens.weight").to_vector());
  // The weights are normal draws of the requested scale, not constants.
  const auto [mean, sample_std] = mean_and_std(embed.to_vector());
  EXPECT_GT(sample_std, 0.25);
  EXPECT_LT(sample_std, 0.75);
}

}  // namespace
}  // namespace autotp
