// The autograd engine: gradient accumulation over shared leaves and repeated backward calls,
// grad mode, detach, explicit upstream gradients, freed graphs, views and very deep graphs.
#include <gtest/gtest.h>

#include <pthread.h>

#include <string>

#include "core/autograd/node.h"
#include "core/ops.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::random_f64;

Tensor values(const std::vector<double>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape, DType::F64);
}

TEST(Autograd, ALeafUsedTwiceAccumulatesBothPaths) {
  // y = x * x + 3 x: dy/dx = 2x + 3
  Tensor x = values({1, -2, 0.5}, {3}).set_requires_grad();
  Tensor y = ops::sum(ops::add(ops::mul(x, x), ops::mul(x, 3.0)));
  y.backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{5, -1, 4}));
}

TEST(Autograd, ADiamondGraphSumsBothBranchesBeforeContinuing) {
  // h = exp(x); y = h * 2 + h * h: dy/dx = (2 + 2h) h
  Tensor x = values({0.1, -0.3}, {2}).set_requires_grad();
  Tensor h = ops::exp(x);
  ops::sum(ops::add(ops::mul(h, 2.0), ops::mul(h, h))).backward();
  const std::vector<double> xv = x.to_vector();
  std::vector<double> expected;
  for (double v : xv)
    expected.push_back((2 + 2 * std::exp(v)) * std::exp(v));
  EXPECT_ALL_CLOSE(x.grad(), values(expected, {2}), testing::tolerance_for(DType::F64));
}

TEST(Autograd, GradientsAccumulateAcrossBackwardCallsUntilZeroGrad) {
  Tensor x = values({1, 2}, {2}).set_requires_grad();
  ops::sum(ops::mul(x, 3.0)).backward();
  ops::sum(ops::mul(x, 3.0)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{6, 6}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
  ops::sum(ops::mul(x, 3.0)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{3, 3}));
}

TEST(Autograd, TheAccumulatedGradientDoesNotAliasTheUpstreamGradient) {
  Tensor x = values({1, 2}, {2}).set_requires_grad();
  Tensor upstream = values({5, 7}, {2});
  ops::add(x, 1.0).backward(upstream);  // the identity gradient reaches the leaf unchanged
  upstream.fill_(0.0);
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{5, 7}));
}

TEST(Autograd, NoGradGuardRecordsNothingAndRestoresTheMode) {
  Tensor x = values({1, 2}, {2}).set_requires_grad();
  {
    NoGradGuard guard;
    EXPECT_FALSE(GradMode::enabled());
    Tensor y = ops::mul(x, 2.0);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    EXPECT_THROW(ops::sum(y).backward(), Error);
    { NoGradGuard nested; }
    EXPECT_FALSE(GradMode::enabled());
  }
  EXPECT_TRUE(GradMode::enabled());
  EXPECT_TRUE(ops::mul(x, 2.0).requires_grad());
}

TEST(Autograd, DetachCutsTheGraph) {
  Tensor x = values({1, 2}, {2}).set_requires_grad();
  Tensor y = ops::mul(x, 2.0);
  Tensor d = y.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
  EXPECT_TRUE(d.shares_storage(y));
  // z = x * detach(2x): only the direct path reaches x, dz/dx = detach(2x) = 2x
  ops::sum(ops::mul(x, d)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, 4}));
}

TEST(Autograd, BackwardTakesAnUpstreamGradientForANonScalarOutput) {
  Tensor x = values({1, 2, 3}, {3}).set_requires_grad();
  Tensor y = ops::mul(x, x);                             // dy/dx = 2x, elementwise
  EXPECT_THROW(y.backward(), Error);                     // non-scalar without a gradient
  EXPECT_THROW(y.backward(values({1, 1}, {2})), Error);  // wrong shape
  y.backward(values({1, 0.5, -1}, {3}));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, 2, -6}));
}

TEST(Autograd, ASecondBackwardThroughAFreedGraphThrowsAndRetainGraphAllowsIt) {
  Tensor x = values({1, 2}, {2}).set_requires_grad();
  Tensor y = ops::sum(ops::exp(x));
  y.backward();
  try {
    y.backward();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("retain_graph"), std::string::npos) << e.what();
  }
  x.zero_grad();
  Tensor z = ops::sum(ops::exp(x));
  z.backward(Tensor(), /*retain_graph=*/true);
  z.backward(Tensor(), /*retain_graph=*/true);
  const std::vector<double> xv = x.to_vector();
  EXPECT_ALL_CLOSE(x.grad(), values({2 * std::exp(xv[0]), 2 * std::exp(xv[1])}, {2}),
                   testing::tolerance_for(DType::F64));
  z.backward();  // the last one frees the graph
  EXPECT_THROW(z.backward(), Error);
}

TEST(Autograd, ABranchSharedWithAFreedGraphReportsTheMisuse) {
  Tensor x = values({1, 2}, {2}).set_requires_grad();
  Tensor h = ops::exp(x);
  ops::sum(h).backward();  // frees h's node
  EXPECT_THROW(ops::sum(ops::mul(h, 2.0)).backward(), Error);
}

TEST(Autograd, ViewsPropagateGradients) {
  auto narrow = [](const std::vector<Tensor>& in) { return ops::exp(in[0].narrow(1, 1, 3)); };
  auto transpose = [](const std::vector<Tensor>& in) {
    return ops::mul(in[0].transpose(0, 1), in[1]);
  };
  auto expand = [](const std::vector<Tensor>& in) { return ops::exp(in[0].expand({3, 5})); };
  auto permute = [](const std::vector<Tensor>& in) {
    return ops::mul(in[0].permute({2, 0, 1}), in[1]);
  };
  auto reshape = [](const std::vector<Tensor>& in) {
    // a transposed tensor cannot be viewed flat: reshape copies, the gradient still flows
    return ops::exp(in[0].transpose(0, 1).reshape({15}));
  };
  auto select_squeeze = [](const std::vector<Tensor>& in) {
    return ops::exp(in[0].select(0, 2).unsqueeze(0).squeeze(0));
  };
  EXPECT_GRADCHECK(narrow, (std::vector<Tensor>{random_f64({3, 5}, 1)}));
  EXPECT_GRADCHECK(transpose, (std::vector<Tensor>{random_f64({3, 5}, 2), random_f64({5, 3}, 3)}));
  EXPECT_GRADCHECK(expand, (std::vector<Tensor>{random_f64({1, 5}, 4)}));
  EXPECT_GRADCHECK(permute,
                   (std::vector<Tensor>{random_f64({3, 5, 2}, 5), random_f64({2, 3, 5}, 6)}));
  EXPECT_GRADCHECK(reshape, (std::vector<Tensor>{random_f64({3, 5}, 7)}));
  EXPECT_GRADCHECK(select_squeeze, (std::vector<Tensor>{random_f64({3, 5}, 8)}));
}

TEST(Autograd, ExpandedGradientsSumOverTheBroadcastDims) {
  Tensor x = values({1, 2, 3}, {3, 1}).set_requires_grad();
  ops::sum(x.expand({3, 4})).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{4, 4, 4}));
}

TEST(Autograd, ADeepChainOfTenThousandOpsDoesNotOverflowTheStack) {
  Tensor x = values({0.5}, {1}).set_requires_grad();
  Tensor y = x;
  for (int i = 0; i < 10000; ++i)
    y = ops::add(y, 1.0);
  ops::sum(y).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{1.0}));
  EXPECT_EQ(y.to_vector(), (std::vector<double>{10000.5}));
}

// Runs `fn` on a thread with a 256 KiB stack: a recursion over 10000 graph nodes needs
// several MiB there and crashes, an iterative walk needs a few KiB.
void run_on_small_stack(void (*fn)()) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, 256 * 1024), 0);
  pthread_t thread;
  ASSERT_EQ(pthread_create(
                &thread, &attr,
                [](void* f) -> void* {
                  reinterpret_cast<void (*)()>(f)();
                  return nullptr;
                },
                reinterpret_cast<void*>(fn)),
            0);
  ASSERT_EQ(pthread_join(thread, nullptr), 0);
  pthread_attr_destroy(&attr);
}

int g_deep_chain_grad = 0;

TEST(Autograd, ADeepChainIsBackpropagatedAndFreedWithoutRecursion) {
  run_on_small_stack([] {
    Tensor x = Tensor::from_vector({0.5}, {1}, DType::F64).set_requires_grad();
    {
      Tensor y = x;
      for (int i = 0; i < 10000; ++i)
        y = ops::mul(y, 1.0);
    }  // never backpropagated: the whole graph is released here
    {
      Tensor y = x;
      for (int i = 0; i < 10000; ++i)
        y = ops::mul(y, 1.0);
      ops::sum(y).backward(Tensor(), /*retain_graph=*/true);  // retained, then dropped
    }
    g_deep_chain_grad = static_cast<int>(x.grad().item());
  });
  EXPECT_EQ(g_deep_chain_grad, 1);
}

TEST(Autograd, OnlyFloatingLeavesCanRequireGradients) {
  Tensor i = Tensor::arange(3);
  EXPECT_THROW(i.set_requires_grad(), Error);
  EXPECT_NO_THROW(i.set_requires_grad(false));
  Tensor x = values({1}, {1}).set_requires_grad();
  Tensor y = ops::mul(x, 2.0);
  EXPECT_THROW(y.set_requires_grad(), Error);  // not a leaf
}

TEST(Autograd, InputsThatNeedNoGradientGetNone) {
  Tensor x = values({1, 2}, {2}).set_requires_grad();
  Tensor c = values({3, 4}, {2});
  ops::sum(ops::mul(x, c)).backward();
  EXPECT_FALSE(c.grad().defined());
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{3, 4}));
}

}  // namespace
}  // namespace autotp
