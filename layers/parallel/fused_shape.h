// Fused-weight `shape` specs (reference 5.10): parsing "(3, -1)", "((8, 4, 4), -1)",
// "(E, -1, H)" and inferring the logical view of a weight [out, in] and its sub-parameters.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/shape.h"

namespace autotp {

// One entry of a shape spec: a positive size, -1 (inferred), or a tuple of sub-sizes (only
// at the partition dim: explicit, possibly unequal sub-parameters).
struct FusedDim {
  enum class Kind { Size, Infer, Parts };
  Kind kind = Kind::Infer;
  int64_t size = 0;            // Kind::Size
  std::vector<int64_t> parts;  // Kind::Parts

  static FusedDim of(int64_t size) { return {Kind::Size, size, {}}; }
  static FusedDim infer() { return {Kind::Infer, 0, {}}; }
  static FusedDim of_parts(std::vector<int64_t> parts) {
    return {Kind::Parts, 0, std::move(parts)};
  }
  bool operator==(const FusedDim&) const = default;
};
using FusedShape = std::vector<FusedDim>;

// Parses "(3, -1)", "((8, 4, 4), -1)", "[4, -1, 16]" (parentheses or brackets, spaces free).
// An Error quotes the text and says where it stopped making sense.
FusedShape parse_fused_shape(std::string_view text);
// "((8, 4, 4), -1)"
std::string fused_shape_str(const FusedShape& shape);

// How a weight is viewed and cut into sub-parameters.
struct SubParamLayout {
  Shape logical_shape;             // the full weight viewed, e.g. [12, 8] or [4, 6, 8]
  int64_t partition_dim = 0;       // the dim of logical_shape that is split
  std::vector<int64_t> sub_sizes;  // the sub-parameters along partition_dim, in order
  bool bias_partitioned = false;   // partition_dim is an output dim (not the last)
};

// The layout of an unfused weight [out, in] split on `partition_dim` (0 or 1).
SubParamLayout plain_layout(const Shape& weight_shape, int64_t partition_dim);

// Infers the logical view of `weight_shape` [out, in] from `shape` (reference 5.10):
// at the partition dim a tuple gives explicit sub-sizes, k > 0 gives k equal ones and -1 one;
// elsewhere positive sizes are kept and -1 is unknown. One unknown is inferred from the
// element count; several take the weight's own sizes when the view is 2-D; otherwise the
// spec is ambiguous. The last dim must be in_features and the leading dims must multiply to
// out_features. Errors name `layer` and the reason.
SubParamLayout infer_subparam_layout(const Shape& weight_shape, const FusedShape& shape,
                                     int64_t partition_dim, const std::string& layer);

}  // namespace autotp
