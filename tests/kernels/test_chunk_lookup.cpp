// tensor_of_chunk, the CUDA AdamW's block-to-tensor map, against a walk over the tensors.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/chunk_lookup.h"

namespace autotp::kernels {
namespace {

// first_chunk of tensors with these chunk counts (count + 1 entries).
std::vector<int64_t> prefix_of(const std::vector<int64_t>& chunks) {
  std::vector<int64_t> first{0};
  for (int64_t c : chunks)
    first.push_back(first.back() + c);
  return first;
}

TEST(ChunkLookup, EveryChunkMapsToTheTensorThatOwnsItIncludingAroundEmptyTensors) {
  const std::vector<std::vector<int64_t>> layouts = {
      {1}, {5}, {1, 1, 1}, {0, 3}, {3, 0}, {2, 0, 0, 4, 0, 1}, {0, 0, 1, 0}, {7, 1, 146, 2, 1}};
  for (const std::vector<int64_t>& chunks : layouts) {
    const std::vector<int64_t> first = prefix_of(chunks);
    const auto count = static_cast<int64_t>(chunks.size());
    int64_t chunk = 0;
    for (int64_t tensor = 0; tensor < count; ++tensor) {
      for (int64_t c = 0; c < chunks[tensor]; ++c, ++chunk)
        EXPECT_EQ(tensor_of_chunk(first.data(), count, chunk), tensor)
            << "chunk " << chunk << " of a layout with " << count << " tensors";
    }
    EXPECT_EQ(chunk, first.back());
  }
}

}  // namespace
}  // namespace autotp::kernels
