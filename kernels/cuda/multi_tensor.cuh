// Multi-tensor launches (.cu only): one block per fixed-size chunk of every tensor of a list.
// The host table of tensors and each tensor's first chunk index (a prefix of count + 1
// entries) are copied into a device workspace; a block finds its tensor by binary search over
// the prefix (kernels/chunk_lookup.h). Space for per-chunk results may follow them.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/chunk_lookup.h"
#include "kernels/cuda/check.h"

namespace autotp::kernels::cuda {

// Where a staged launch's pieces live in device memory.
template <typename Entry>
struct MultiTensorTable {
  const Entry* entries;        // [count]
  const int64_t* first_chunk;  // [count + 1]
  void* per_chunk;             // [chunks] of per_chunk_bytes each, 16-byte aligned
  int64_t count, chunks;
};

inline int64_t multi_tensor_align16(int64_t bytes) {
  return (bytes + 15) / 16 * 16;
}

// Bytes of workspace for `entries` (each with a `numel` member) in chunks of chunk_elements,
// with per_chunk_bytes of device space per chunk after the table.
template <typename Entry>
int64_t multi_tensor_workspace_bytes(const Entry* entries, int64_t count, int64_t chunk_elements,
                                     int64_t per_chunk_bytes) {
  int64_t chunks = 0;
  for (int64_t k = 0; k < count; ++k)
    chunks += (entries[k].numel + chunk_elements - 1) / chunk_elements;
  return multi_tensor_align16(count * static_cast<int64_t>(sizeof(Entry))) +
         multi_tensor_align16((count + 1) * static_cast<int64_t>(sizeof(int64_t))) +
         chunks * per_chunk_bytes;
}

// Checks the sizes, computes the chunk prefix and copies table and prefix into `workspace` on
// `stream` (from pageable memory: the copies return once the host arrays are staged). A
// result with chunks == 0 launches nothing.
template <typename Entry>
MultiTensorTable<Entry> stage_multi_tensor(const char* op, const Entry* entries, int64_t count,
                                           int64_t chunk_elements, int64_t per_chunk_bytes,
                                           void* workspace, int64_t workspace_bytes,
                                           cudaStream_t stream) {
  if (count < 0) throw std::invalid_argument(std::string(op) + ": negative tensor count");
  std::vector<int64_t> first_chunk(static_cast<size_t>(count) + 1, 0);
  for (int64_t k = 0; k < count; ++k) {
    if (entries[k].numel < 0) {
      throw std::invalid_argument(std::string(op) + ": tensor " + std::to_string(k) +
                                  " has a negative numel");
    }
    first_chunk[k + 1] = first_chunk[k] + (entries[k].numel + chunk_elements - 1) / chunk_elements;
  }
  MultiTensorTable<Entry> table{nullptr, nullptr, nullptr, count, first_chunk[count]};
  if (table.chunks == 0) return table;
  const int64_t needed =
      multi_tensor_workspace_bytes(entries, count, chunk_elements, per_chunk_bytes);
  if (workspace == nullptr || workspace_bytes < needed) {
    throw std::invalid_argument(std::string(op) + ": workspace of " +
                                std::to_string(workspace_bytes) + " bytes, need " +
                                std::to_string(needed));
  }
  if (table.chunks > 0x7fffffff) {
    throw std::invalid_argument(std::string(op) + ": too many chunks (" +
                                std::to_string(table.chunks) + ") for one launch");
  }
  char* base = static_cast<char*>(workspace);
  const int64_t prefix_at = multi_tensor_align16(count * static_cast<int64_t>(sizeof(Entry)));
  const int64_t per_chunk_at =
      prefix_at + multi_tensor_align16((count + 1) * static_cast<int64_t>(sizeof(int64_t)));
  auto* device_entries = reinterpret_cast<Entry*>(base);
  auto* device_prefix = reinterpret_cast<int64_t*>(base + prefix_at);
  AUTOTP_CUDA_CHECK(cudaMemcpyAsync(device_entries, entries,
                                    static_cast<size_t>(count) * sizeof(Entry),
                                    cudaMemcpyHostToDevice, stream));
  AUTOTP_CUDA_CHECK(cudaMemcpyAsync(device_prefix, first_chunk.data(),
                                    first_chunk.size() * sizeof(int64_t), cudaMemcpyHostToDevice,
                                    stream));
  table.entries = device_entries;
  table.first_chunk = device_prefix;
  table.per_chunk = base + per_chunk_at;
  return table;
}

// In a kernel: the tensor that owns this block's chunk and the chunk's element range.
struct ChunkRange {
  int64_t tensor, begin, end;
};

template <typename Entry>
__device__ __forceinline__ ChunkRange chunk_of_block(const MultiTensorTable<Entry>& table,
                                                     int64_t chunk_elements) {
  const int64_t block = blockIdx.x;
  const int64_t k = tensor_of_chunk(table.first_chunk, table.count, block);
  const int64_t begin = (block - table.first_chunk[k]) * chunk_elements;
  const int64_t numel = table.entries[k].numel;
  return {k, begin, begin + chunk_elements < numel ? begin + chunk_elements : numel};
}

}  // namespace autotp::kernels::cuda
