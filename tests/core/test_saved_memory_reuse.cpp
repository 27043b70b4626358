// A backward may write its result into the memory of a tensor it saved, but only on that
// tensor's last use: the engine says so (no retain_graph) and nothing else holds the tensor.
// The cross entropy's logits gradient takes the logits' memory this way (at a 128k vocabulary
// the largest buffer of a step, allocated at the step's peak). Each case checks where the result
// went and that its values equal those computed into fresh memory.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "core/autograd/engine.h"
#include "core/autograd/node.h"
#include "core/ops.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/support/gradcheck.h"

namespace autotp {
namespace {

using testing::random_tensor;

// The last_use flag every backward of the op saw, in order.
Tensor identity_recording_last_use(const Tensor& x,
                                   const std::shared_ptr<std::vector<bool>>& seen) {
  return record_memory_reusing_op(x.detach().clone(), "RecordingIdentityBackward", {&x},
                                  [seen](const Tensor& g, bool last_use) {
                                    seen->push_back(last_use);
                                    return std::vector<Tensor>{g};
                                  });
}

TEST(SavedMemoryReuse, TheEngineCallsALastUseOnlyWhenItFreesTheGraphAfterwards) {
  Tensor x = random_tensor({3}, 1, DType::F64).set_requires_grad();
  auto seen = std::make_shared<std::vector<bool>>();
  const Tensor y = ops::sum(identity_recording_last_use(x, seen));
  run_backward(y, Tensor(), /*retain_graph=*/true);
  run_backward(y, Tensor(), /*retain_graph=*/false);
  EXPECT_EQ(*seen, (std::vector<bool>{false, true}));
  // Called outside the engine (apply) it is never the last use.
  Tensor z = random_tensor({3}, 2, DType::F64).set_requires_grad();
  const Tensor out = identity_recording_last_use(z, seen);
  out.autograd_meta()->grad_fn->apply(Tensor::ones({3}, DType::F64));
  EXPECT_EQ(seen->back(), false);
}

// Logits computed by an op the caller does not keep (as a model's lm_head output is), the
// targets with an ignored row, and the cross entropy's backward node.
struct CrossEntropyGraph {
  Tensor weight;  // [4, 6], requires grad
  Tensor loss;
  const void* logits_memory = nullptr;
  std::shared_ptr<Node> backward_node() const { return loss.autograd_meta()->grad_fn; }
};

CrossEntropyGraph cross_entropy_of_a_projection(bool caller_keeps_logits, Tensor* kept) {
  CrossEntropyGraph g;
  g.weight = random_tensor({6, 4}, 3, DType::F64).set_requires_grad();
  Tensor logits = ops::matmul(random_tensor({5, 6}, 4, DType::F64), g.weight);  // [5, 4]
  g.logits_memory = logits.raw_data();
  g.loss = ops::cross_entropy(logits, Tensor::from_vector_i64({3, -100, 0, 1, 2}, {5}));
  if (caller_keeps_logits) *kept = logits;
  return g;
}

TEST(SavedMemoryReuse, CrossEntropyWritesTheLogitsGradientIntoTheLogitsOnTheirLastUse) {
  CrossEntropyGraph g = cross_entropy_of_a_projection(false, nullptr);
  const Tensor seed = Tensor::full({}, 0.75, DType::F64);
  PendingGradients none(1);
  // Not the last use: fresh memory, the logits left as they are for the next call.
  const std::vector<Tensor> fresh = g.backward_node()->apply_folding(seed, none, false);
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_NE(fresh[0].raw_data(), g.logits_memory);
  const std::vector<Tensor> reused = g.backward_node()->apply_folding(seed, none, true);
  ASSERT_EQ(reused.size(), 1u);
  EXPECT_EQ(reused[0].raw_data(), g.logits_memory);
  EXPECT_EQ(reused[0].to_vector(), fresh[0].to_vector());
  // The logits are gone now: a further call is refused rather than computed from the gradient.
  EXPECT_THROW(g.backward_node()->apply_folding(seed, none, false), InternalError);
}

TEST(SavedMemoryReuse, CrossEntropyLeavesLogitsTheCallerHoldsUntouched) {
  Tensor logits;
  CrossEntropyGraph g = cross_entropy_of_a_projection(true, &logits);
  const std::vector<double> before = logits.to_vector();
  PendingGradients none(1);
  const std::vector<Tensor> grads =
      g.backward_node()->apply_folding(Tensor::full({}, 1.0, DType::F64), none, true);
  EXPECT_NE(grads[0].raw_data(), g.logits_memory);
  EXPECT_EQ(logits.to_vector(), before);
}

TEST(SavedMemoryReuse, BackwardTwiceThroughARetainedCrossEntropyGivesTheSameGradient) {
  // Were the first backward to overwrite the logits, the second would differ.
  CrossEntropyGraph g = cross_entropy_of_a_projection(false, nullptr);
  run_backward(g.loss, Tensor(), /*retain_graph=*/true);
  const std::vector<double> first = g.weight.grad().to_vector();
  g.weight.zero_grad();
  run_backward(g.loss, Tensor(), /*retain_graph=*/false);  // this one may reuse the logits
  EXPECT_EQ(g.weight.grad().to_vector(), first);
}

TEST(SavedMemoryReuse, TheReusedLogitsGradientMatchesFiniteDifferences) {
  // The projection's output is a temporary here too, and gradcheck's backward frees the graph:
  // the reusing path (the tests above show where it writes).
  const Tensor x = random_tensor({5, 6}, 4, DType::F64);
  const Tensor targets = Tensor::from_vector_i64({3, -100, 0, 1, 2}, {5});
  EXPECT_GRADCHECK(
      [&](const std::vector<Tensor>& in) {
        return ops::cross_entropy(ops::matmul(x, in[0]), targets);
      },
      std::vector<Tensor>{testing::random_f64({6, 4}, 5)});
}

}  // namespace
}  // namespace autotp
