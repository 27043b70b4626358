// Recording mode under mpirun: per-step counts by kind and bytes, sequence checks that pass
// when ranks agree, and mismatches reported on every rank as errors naming the collective.
#include <gtest/gtest.h>

#include "tests/support/mpi_test_env.h"

namespace autotp {
namespace {

using testing::test_world;

TEST(Recording, CountsCollectivesPerStepByKindAndBytes) {
  auto world = test_world();
  world->enable_recording();
  const int n = world->size();
  world->all_reduce(Tensor::ones({3, 5}));                  // 15 f32 = 60 B
  world->all_reduce(Tensor::ones({2}, DType::F64));         // 16 B
  world->all_gather(Tensor::ones({2, 3}, DType::BF16), 1);  // gathered 6n bf16
  world->broadcast(Tensor::ones({4}, DType::I64), 0);       // 32 B
  world->recorder()->begin_step();
  world->reduce_scatter(Tensor::ones({2 * n}), 0);  // input 2n f32
  world->barrier();

  const CollectiveRecorder& rec = *world->recorder();
  ASSERT_EQ(rec.history().size(), 1u);
  const CollectiveCounts& step0 = rec.history()[0];
  EXPECT_EQ(step0[CollectiveKind::AllReduce].calls, 2);
  EXPECT_EQ(step0[CollectiveKind::AllReduce].bytes, 60 + 16);
  EXPECT_EQ(step0[CollectiveKind::AllGather].calls, 1);
  EXPECT_EQ(step0[CollectiveKind::AllGather].bytes, 6 * n * 2);
  EXPECT_EQ(step0[CollectiveKind::Broadcast].bytes, 32);
  EXPECT_EQ(step0.total_calls(), 4);
  EXPECT_EQ(rec.current()[CollectiveKind::ReduceScatter].bytes, 2 * n * 4);
  EXPECT_EQ(rec.current()[CollectiveKind::Barrier].calls, 1);
  EXPECT_EQ(rec.current().total_calls(), 2);
  EXPECT_EQ(rec.step(), 1);
  world->check_sequence();  // every rank issued the same six collectives
  EXPECT_TRUE(world->recorder()->log().empty());
}

TEST(Recording, VerifyEachReportsRanksIssuingDifferentCollectivesOnEveryRank) {
  auto world = test_world();
  world->enable_recording({.verify_each = true});
  world->all_reduce(Tensor::ones({4}));  // agreed
  const Tensor t = Tensor::ones({6});
  // Rank 0 would all_reduce while the others broadcast: a hang or garbage without the check.
  if (world->rank() == 0) {
    EXPECT_ERROR_CONTAINING(world->all_reduce(t), {"collective mismatch", "'world'",
                                                   "rank 0: collective #1 all_reduce(sum, f32, 6",
                                                   "rank 1: collective #1 broadcast(f32, 6"});
  } else {
    EXPECT_ERROR_CONTAINING(world->broadcast(t, 0),
                            {"collective mismatch", "all_reduce", "broadcast"});
  }
  // The ranks stay in step afterwards.
  world->barrier();
}

TEST(Recording, SequenceCheckNamesTheFirstDifferingCollective) {
  auto world = test_world();
  world->enable_recording();  // no per-collective check: the mismatch is found at the check
  world->all_reduce(Tensor::ones({2}));
  world->barrier();
  // The same bytes move either way, so this completes, but the ranks disagree on the dim.
  const Tensor local = Tensor::ones({1, 2});
  world->all_gather(local, world->rank() == 0 ? 0 : 1);
  world->all_reduce(Tensor::ones({3}));
  EXPECT_ERROR_CONTAINING(
      world->check_sequence(),
      {"sequence mismatch", "first differ at collective #2",
       "rank 0: all_gather(f32, " + std::to_string(2 * world->size()) + " elements, dim 0",
       "rank 1: all_gather(f32, " + std::to_string(2 * world->size()) + " elements, dim 1"});
  // After the report the log starts afresh and agreeing ranks pass again.
  world->all_reduce(Tensor::ones({2}));
  world->check_sequence();
}

TEST(Recording, SequenceCheckReportsARankThatIssuedFewerCollectives) {
  auto world = test_world();
  world->enable_recording();
  // The other ranks record one more collective than rank 0 (recorded without communicating,
  // as a rank that issued an extra barrier would, minus the hang).
  world->all_reduce(Tensor::ones({2}));
  if (world->rank() != 0) world->recorder()->record(CollectiveDesc{CollectiveKind::Barrier});
  EXPECT_ERROR_CONTAINING(
      world->check_sequence(),
      {"first differ at collective #1", "rank 0: (none: it issued only 1", "rank 1: barrier()"});
}

TEST(Recording, ACheckAgainstACollectiveIsReportedWithVerifyEach) {
  auto world = test_world();
  world->enable_recording({.verify_each = true});
  if (world->rank() == 0) {
    EXPECT_ERROR_CONTAINING(world->check_sequence(), {"called check_sequence()", "all_reduce"});
  } else {
    EXPECT_ERROR_CONTAINING(world->all_reduce(Tensor::ones({2})),
                            {"collective mismatch", "check_sequence()"});
  }
  world->barrier();
}

}  // namespace
}  // namespace autotp
