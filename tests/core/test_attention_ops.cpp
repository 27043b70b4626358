// causal_mask and scaled_dot_product_attention: values against explicit loops in double
// (MHA, GQA, MQA; causal and not), gradient checks including grouped heads, the GQA gradient
// against repeated-kv MHA, and shape errors.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/ops.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::random_tensor;

TEST(CausalMask, FillsEntriesAboveTheEndAlignedDiagonal) {
  const int64_t sq = 3, sk = 5;
  const Tensor scores = random_tensor({2, sq, sk}, 90, DType::F32);
  const std::vector<double> in = scores.to_vector();
  const std::vector<double> out = ops::causal_mask(scores).to_vector();
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t i = 0; i < sq; ++i) {
      for (int64_t j = 0; j < sk; ++j) {
        const size_t e = static_cast<size_t>((b * sq + i) * sk + j);
        if (j <= i + (sk - sq)) {
          EXPECT_EQ(out[e], in[e]) << "b " << b << " i " << i << " j " << j;
        } else {
          EXPECT_TRUE(std::isinf(out[e]) && out[e] < 0) << "b " << b << " i " << i << " j " << j;
        }
      }
    }
  }
  // A square mask is lower-triangular with the given value.
  EXPECT_EQ(ops::causal_mask(Tensor::ones({2, 2}), -7.0).to_vector(),
            (std::vector<double>{1, -7, 1, 1}));
}

TEST(CausalMask, GradientIsZeroAtMaskedPositions) {
  Tensor scores = random_tensor({2, 3}, 91, DType::F64);
  scores.set_requires_grad(true);
  ops::sum(ops::causal_mask(scores)).backward();
  EXPECT_EQ(scores.grad().to_vector(), (std::vector<double>{1, 1, 0, 1, 1, 1}));
  const Tensor x = testing::random_f64({2, 4, 3}, 92);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::causal_mask(in[0], -3.0); },
                   std::vector<Tensor>{x});
}

TEST(CausalMask, RejectsScoresWithFewerThanTwoDims) {
  EXPECT_ERROR_CONTAINS(ops::causal_mask(Tensor::zeros({4})), "[4]");
}

// Attention by explicit loops in double: q [b, hq, s, d], k/v [b, hkv, s, d].
std::vector<double> reference_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                        bool causal, double scale) {
  const int64_t b = q.size(0), hq = q.size(1), s = q.size(2), d = q.size(3), hkv = k.size(1);
  const std::vector<double> qv = q.to_vector(), kv = k.to_vector(), vv = v.to_vector();
  std::vector<double> out(qv.size(), 0.0);
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t h = 0; h < hq; ++h) {
      const int64_t kh = h / (hq / hkv);
      for (int64_t i = 0; i < s; ++i) {
        std::vector<double> w(s, 0.0);
        double total = 0.0;
        for (int64_t j = 0; j < s; ++j) {
          if (causal && j > i) continue;
          double dot = 0.0;
          for (int64_t e = 0; e < d; ++e) {
            dot += qv[((bi * hq + h) * s + i) * d + e] * kv[((bi * hkv + kh) * s + j) * d + e];
          }
          w[j] = std::exp(dot * scale);
          total += w[j];
        }
        for (int64_t j = 0; j < s; ++j) {
          for (int64_t e = 0; e < d; ++e) {
            out[((bi * hq + h) * s + i) * d + e] +=
                w[j] / total * vv[((bi * hkv + kh) * s + j) * d + e];
          }
        }
      }
    }
  }
  return out;
}

struct HeadLayout {
  int64_t hq, hkv;
};

TEST(ScaledDotProductAttention, MatchesExplicitLoopsForMhaGqaAndMqa) {
  const int64_t b = 2, s = 5, d = 3;
  for (HeadLayout heads :
       {HeadLayout{3, 3}, HeadLayout{6, 2}, HeadLayout{6, 3}, HeadLayout{3, 1}}) {
    for (bool causal : {true, false}) {
      for (DType dtype : {DType::F32, DType::F64}) {
        const Tensor q = random_tensor({b, heads.hq, s, d}, 100, dtype, -2.0, 2.0);
        const Tensor k = random_tensor({b, heads.hkv, s, d}, 101, dtype, -2.0, 2.0);
        const Tensor v = random_tensor({b, heads.hkv, s, d}, 102, dtype);
        const Tensor out = ops::scaled_dot_product_attention(q, k, v, causal);
        const std::vector<double> expected =
            reference_attention(q, k, v, causal, 1.0 / std::sqrt(static_cast<double>(d)));
        EXPECT_ALL_CLOSE(out, Tensor::from_vector(expected, {b, heads.hq, s, d}, dtype),
                         testing::tolerance_for(dtype))
            << "hq " << heads.hq << ", hkv " << heads.hkv << ", causal " << causal << ", "
            << dtype_name(dtype);
      }
    }
  }
}

TEST(ScaledDotProductAttention, UsesAnExplicitScale) {
  const Tensor q = random_tensor({1, 2, 4, 3}, 103, DType::F64, -2.0, 2.0);
  const Tensor k = random_tensor({1, 1, 4, 3}, 104, DType::F64, -2.0, 2.0);
  const Tensor v = random_tensor({1, 1, 4, 3}, 105);
  EXPECT_ALL_CLOSE(
      ops::scaled_dot_product_attention(q, k, v, true, 0.7),
      Tensor::from_vector(reference_attention(q, k, v, true, 0.7), {1, 2, 4, 3}, DType::F64),
      testing::tolerance_for(DType::F64));
}

TEST(ScaledDotProductAttention, FirstCausalQueryReturnsTheFirstValue) {
  const Tensor q = random_tensor({1, 2, 3, 4}, 106);
  const Tensor k = random_tensor({1, 1, 3, 4}, 107);
  const Tensor v = random_tensor({1, 1, 3, 4}, 108);
  const Tensor out = ops::scaled_dot_product_attention(q, k, v, true);
  for (int64_t h = 0; h < 2; ++h) {
    EXPECT_ALL_CLOSE(out.select(1, h).select(1, 0), v.select(1, 0).select(1, 0),
                     testing::tolerance_for(DType::F64));
  }
}

TEST(ScaledDotProductAttention, GradientsMatchFiniteDifferencesForGroupedHeads) {
  struct Case {
    int64_t b, hq, hkv, s, d;
    bool causal;
  };
  for (const Case& c : {Case{1, 6, 2, 3, 2, true}, Case{1, 6, 3, 3, 3, false},
                        Case{2, 3, 3, 4, 3, true}, Case{1, 3, 1, 5, 2, false}}) {
    const Tensor q = testing::random_f64({c.b, c.hq, c.s, c.d}, 110);
    const Tensor k = testing::random_f64({c.b, c.hkv, c.s, c.d}, 111);
    const Tensor v = testing::random_f64({c.b, c.hkv, c.s, c.d}, 112);
    const bool causal = c.causal;
    EXPECT_GRADCHECK(
        [causal](const std::vector<Tensor>& in) {
          return ops::scaled_dot_product_attention(in[0], in[1], in[2], causal);
        },
        (std::vector<Tensor>{q, k, v}))
        << "b " << c.b << ", hq " << c.hq << ", hkv " << c.hkv << ", s " << c.s << ", d " << c.d
        << ", causal " << c.causal;
  }
}

TEST(ScaledDotProductAttention, GqaGradientsEqualMhaWithRepeatedKeysAndValues) {
  const int64_t b = 2, hq = 6, hkv = 2, s = 4, d = 3, group = hq / hkv;
  const Tensor g = random_tensor({b, hq, s, d}, 113);
  Tensor q1 = random_tensor({b, hq, s, d}, 114), k1 = random_tensor({b, hkv, s, d}, 115),
         v1 = random_tensor({b, hkv, s, d}, 116);
  Tensor q2 = q1.clone(), k2 = k1.clone(), v2 = v1.clone();
  for (Tensor* t : {&q1, &k1, &v1, &q2, &k2, &v2})
    t->set_requires_grad(true);
  const Tensor out_gqa = ops::scaled_dot_product_attention(q1, k1, v1, true);
  // Repeat each kv head `group` times: [b, hkv, s, d] -> [b, hkv, group, s, d] -> [b, hq, s, d].
  auto repeat = [&](const Tensor& t) {
    return t.unsqueeze(2).expand({b, hkv, group, s, d}).reshape({b, hq, s, d});
  };
  const Tensor out_mha = ops::scaled_dot_product_attention(q2, repeat(k2), repeat(v2), true);
  const testing::Tolerance tol = testing::tolerance_for(DType::F64);
  EXPECT_ALL_CLOSE(out_gqa, out_mha, tol);
  out_gqa.backward(g);
  out_mha.backward(g);
  EXPECT_ALL_CLOSE(q1.grad(), q2.grad(), tol);
  EXPECT_ALL_CLOSE(k1.grad(), k2.grad(), tol);
  EXPECT_ALL_CLOSE(v1.grad(), v2.grad(), tol);
}

TEST(ScaledDotProductAttention, RejectsIndivisibleHeadsAndMismatchedShapes) {
  const Tensor q = Tensor::zeros({1, 5, 3, 4});
  const Tensor kv = Tensor::zeros({1, 2, 3, 4});
  EXPECT_ERROR_CONTAINS(ops::scaled_dot_product_attention(q, kv, kv), "5 query heads");
  const Tensor q6 = Tensor::zeros({1, 6, 3, 4});
  EXPECT_ERROR_CONTAINS(ops::scaled_dot_product_attention(q6, kv, Tensor::zeros({1, 2, 3, 2})),
                        "[1, 2, 3, 2]");
  EXPECT_ERROR_CONTAINS(ops::scaled_dot_product_attention(q6, Tensor::zeros({1, 2, 5, 4}),
                                                          Tensor::zeros({1, 2, 5, 4})),
                        "[1, 2, 5, 4]");
  EXPECT_ERROR_CONTAINS(ops::scaled_dot_product_attention(Tensor::zeros({6, 3, 4}), kv, kv),
                        "[6, 3, 4]");
  EXPECT_ERROR_CONTAINS(ops::scaled_dot_product_attention(q6, kv.to(DType::F64), kv), "f64");
}

TEST(ScaledDotProductAttention, RejectsKernelVariantsThatCannotBeCombined) {
  const Tensor q = Tensor::zeros({1, 2, 3, 64});
  const Tensor kv = Tensor::zeros({1, 1, 3, 64});
  ops::AttentionKernels both;
  both.dq_from_stored_scores = true;
  both.dkdv_kv_in_registers = true;
  EXPECT_ERROR_CONTAINS(ops::scaled_dot_product_attention(q, kv, kv, true, 0.0, both),
                        "dq_from_stored_scores and dkdv_kv_in_registers exclude each other");
  ops::AttentionKernels stored;  // alone it applies to any head dim; the CPU ignores it
  stored.dq_from_stored_scores = true;
  const Tensor wide = Tensor::zeros({1, 2, 3, 128});
  EXPECT_NO_THROW(ops::scaled_dot_product_attention(wide, wide, wide, true, 0.0, stored));
}

}  // namespace
}  // namespace autotp
