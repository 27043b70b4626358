// Post-accumulate-grad hooks on leaves: called after .grad holds the new sum, once per
// backward however often the leaf is used, in registration order, removable, leaves only.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "tests/core/nn_test_helpers.h"

namespace autotp {
namespace {

Tensor values(const std::vector<double>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape, DType::F64);
}

TEST(GradHooks, AHookSeesTheLeafWithItsGradientAlreadyAccumulated) {
  // y = sum(x * c): dy/dx = c; two backward passes accumulate 2c.
  Tensor x = values({1, -2, 0.5}, {3}).set_requires_grad();
  const Tensor c = values({3, 4, -5}, {3});
  std::vector<std::vector<double>> seen;
  bool grad_mode_in_hook = true;
  x.register_post_accumulate_grad_hook([&](const Tensor& leaf) {
    seen.push_back(leaf.grad().to_vector());
    grad_mode_in_hook = GradMode::enabled();
    EXPECT_EQ(leaf.raw_data(), x.raw_data());  // the leaf itself
  });
  ops::sum(ops::mul(x, c)).backward();
  ops::sum(ops::mul(x, c)).backward();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], (std::vector<double>{3, 4, -5}));
  EXPECT_EQ(seen[1], (std::vector<double>{6, 8, -10}));
  EXPECT_FALSE(grad_mode_in_hook);
}

TEST(GradHooks, ALeafUsedSeveralTimesCallsItsHookOnceWithTheWholeGradient) {
  // y = sum(x * x + 3 x + x): dy/dx = 2x + 4, from three uses of x.
  Tensor x = values({1, -2, 0.5}, {3}).set_requires_grad();
  int calls = 0;
  std::vector<double> seen;
  x.register_post_accumulate_grad_hook([&](const Tensor& leaf) {
    ++calls;
    seen = leaf.grad().to_vector();
  });
  ops::sum(ops::add(ops::add(ops::mul(x, x), ops::mul(x, 3.0)), x)).backward();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, (std::vector<double>{6, 0, 5}));
}

TEST(GradHooks, SeveralHooksRunInRegistrationOrderAndCopiesShareThem) {
  Tensor x = values({1, 2}, {2}).set_requires_grad();
  const Tensor alias = x;  // a copy: same autograd record
  std::vector<std::string> order;
  x.register_post_accumulate_grad_hook([&](const Tensor&) { order.push_back("first"); });
  alias.register_post_accumulate_grad_hook([&](const Tensor&) { order.push_back("second"); });
  x.register_post_accumulate_grad_hook([&](const Tensor&) { order.push_back("third"); });
  ops::sum(x).backward();
  EXPECT_EQ(order, (std::vector<std::string>{"first", "second", "third"}));
}

TEST(GradHooks, ALeafCloserToTheLossIsFinalFirst) {
  // y = sum((x * w1) * w2): backward reaches w2's accumulator before w1's.
  Tensor x = values({1, 2}, {2});
  Tensor w1 = values({3, 4}, {2}).set_requires_grad();
  Tensor w2 = values({5, 6}, {2}).set_requires_grad();
  std::vector<std::string> order;
  w1.register_post_accumulate_grad_hook([&](const Tensor&) { order.push_back("w1"); });
  w2.register_post_accumulate_grad_hook([&](const Tensor&) { order.push_back("w2"); });
  ops::sum(ops::mul(ops::mul(x, w1), w2)).backward();
  EXPECT_EQ(order, (std::vector<std::string>{"w2", "w1"}));
}

TEST(GradHooks, ARemovedHookIsNotCalledAndTheOthersStay) {
  Tensor x = values({1, 2}, {2}).set_requires_grad();
  int a = 0, b = 0;
  const int64_t ia = x.register_post_accumulate_grad_hook([&](const Tensor&) { ++a; });
  const int64_t ib = x.register_post_accumulate_grad_hook([&](const Tensor&) { ++b; });
  EXPECT_NE(ia, ib);
  ops::sum(x).backward();
  x.remove_post_accumulate_grad_hook(ia);
  x.remove_post_accumulate_grad_hook(ia);  // a second removal is harmless
  ops::sum(x).backward();
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 2);
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, 2}));
}

TEST(GradHooks, AHookMayRemoveItselfWhileRunning) {
  Tensor x = values({1, 2}, {2}).set_requires_grad();
  int calls = 0, other = 0;
  int64_t id = -1;
  id = x.register_post_accumulate_grad_hook([&](const Tensor& leaf) {
    ++calls;
    leaf.remove_post_accumulate_grad_hook(id);
  });
  x.register_post_accumulate_grad_hook([&](const Tensor&) { ++other; });
  ops::sum(x).backward();
  ops::sum(x).backward();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(other, 2);  // the hook after it still ran in the first pass
}

TEST(GradHooks, ALeafThatGetsNoGradientCallsNoHook) {
  Tensor x = values({1, 2}, {2}).set_requires_grad();
  Tensor unused = values({1, 2}, {2}).set_requires_grad();
  int calls = 0;
  unused.register_post_accumulate_grad_hook([&](const Tensor&) { ++calls; });
  ops::sum(x).backward();
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(unused.grad().defined());
}

TEST(GradHooks, OnlyLeavesThatRequireGradientsTakeHooks) {
  Tensor x = values({1, 2}, {2}).set_requires_grad();
  const Tensor y = ops::mul(x, 2.0);
  EXPECT_ERROR_CONTAINS(y.register_post_accumulate_grad_hook([](const Tensor&) {}),
                        "only leaf tensors accumulate gradients (this one comes from");
  const Tensor constant = values({1, 2}, {2});
  EXPECT_ERROR_CONTAINS(constant.register_post_accumulate_grad_hook([](const Tensor&) {}),
                        "the tensor does not require a gradient");
}

}  // namespace
}  // namespace autotp
