// safetensors files: a reader that validates the whole header against the file size before any
// tensor memory is allocated, and an atomic writer that produces the reference library's bytes.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace autotp::io {

// Format: 8-byte little-endian header length N, N bytes of JSON
//   {"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}}
// padded with spaces, then the data buffer; [b, e) are byte offsets into that buffer and the
// tensors cover it exactly, without gaps or overlaps.

// One tensor of a safetensors header.
struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype_name;      // as written in the file: "F32", "BF16", "U8", ...
  std::optional<DType> dtype;  // the autotp dtype; empty when autotp cannot load this one
  Shape shape;
  uint64_t data_begin = 0;  // byte offsets into the data buffer
  uint64_t data_end = 0;

  uint64_t nbytes() const { return data_end - data_begin; }
};

// The safetensors name of an autotp dtype ("F32", "F64", "BF16", "F16", "I32", "I64").
std::string_view safetensors_dtype_name(DType dtype);

// An open safetensors file. Opening reads and validates only the header; tensors are read on
// demand with pread into freshly allocated tensors. Move-only; closes the file when destroyed.
class SafetensorsFile {
 public:
  // Throws autotp::Error naming the file for anything wrong: a missing or truncated file, a
  // header length beyond the file, invalid JSON, an unknown dtype, a shape that does not match
  // its byte range, ranges outside the buffer or not covering it exactly, duplicate names.
  explicit SafetensorsFile(std::string path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // All tensors, in data-offset order.
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(std::string_view name) const;
  const SafetensorsTensorInfo& info(std::string_view name) const;  // throws naming the file

  // Reads tensor `name` into a new CPU tensor, converted to `dtype` when given.
  Tensor load(std::string_view name, std::optional<DType> dtype = std::nullopt) const;
  // Reads elements [begin, begin + count) of tensor `name` in row-major order into a new 1-D
  // CPU tensor [count] of the file's dtype (e.g. one parameter's slice of a flat state) without
  // reading the rest. Throws naming the file and tensor when the range exceeds the tensor.
  Tensor load_elements(std::string_view name, int64_t begin, int64_t count) const;
  // The same into `out` (a contiguous CPU tensor of the file's dtype; count = out.numel()).
  void read_elements(std::string_view name, int64_t begin, const Tensor& out) const;
  // Every tensor, by name.
  std::map<std::string, Tensor> load_all(std::optional<DType> dtype = std::nullopt) const;

  uint64_t header_bytes() const { return header_bytes_; }  // N
  uint64_t file_bytes() const { return file_bytes_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t header_bytes_ = 0;
  uint64_t file_bytes_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in tensors_
};

// Every tensor of the file at `path` (SafetensorsFile(path).load_all(dtype)).
std::map<std::string, Tensor> load_safetensors(const std::string& path,
                                               std::optional<DType> dtype = std::nullopt);

// Writes `tensors` (any device, dtype, strides) to `path` atomically (a temporary file, fsync,
// rename), so an existing file survives a failed or interrupted save. The bytes equal those of
// the reference implementation (huggingface/safetensors): tensors ordered by dtype as it orders
// them (widest first), then by name; the header compact JSON padded with spaces to 8 bytes.
// Names must be unique, non-empty and not "__metadata__"; `metadata` is written when non-empty.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace autotp::io
