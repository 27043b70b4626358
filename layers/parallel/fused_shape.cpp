// Fused-weight shape specs: the parser and the logical-view inference of reference 5.10.
#include "layers/parallel/fused_shape.h"

#include <cctype>

#include "core/error.h"

namespace autotp {

namespace {

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  FusedShape parse() {
    FusedShape shape;
    expect_open();
    do {
      skip_spaces();
      if (peek() == '(' || peek() == '[') {
        const char close = peek() == '(' ? ')' : ']';
        ++at_;
        std::vector<int64_t> parts;
        do
          parts.push_back(parse_int());
        while (accept(','));
        expect(close);
        shape.push_back(FusedDim::of_parts(std::move(parts)));
      } else {
        const int64_t v = parse_int();
        if (v == -1) {
          shape.push_back(FusedDim::infer());
        } else {
          check(v > 0, fmt::format("size {} is neither positive nor -1", v));
          shape.push_back(FusedDim::of(v));
        }
      }
    } while (accept(','));
    expect(close_);
    skip_spaces();
    check(at_ == text_.size(), "unexpected text after the closing bracket");
    return shape;
  }

 private:
  void skip_spaces() {
    while (at_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[at_])))
      ++at_;
  }
  char peek() {
    skip_spaces();
    return at_ < text_.size() ? text_[at_] : '\0';
  }
  bool accept(char c) {
    if (peek() != c) return false;
    ++at_;
    return true;
  }
  void expect(char c) { check(accept(c), fmt::format("expected '{}'", c)); }
  void expect_open() {
    if (accept('(')) {
      close_ = ')';
    } else {
      expect('[');
      close_ = ']';
    }
  }
  int64_t parse_int() {
    skip_spaces();
    const size_t start = at_;
    if (at_ < text_.size() && text_[at_] == '-') ++at_;
    while (at_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[at_])))
      ++at_;
    check(at_ > start && std::isdigit(static_cast<unsigned char>(text_[at_ - 1])),
          "expected an integer");
    return std::stoll(std::string(text_.substr(start, at_ - start)));
  }
  void check(bool ok, const std::string& what) {
    AUTOTP_CHECK(ok, "fused shape '{}': {} at character {}", text_, what, at_);
  }

  std::string_view text_;
  size_t at_ = 0;
  char close_ = ')';
};

}  // namespace

FusedShape parse_fused_shape(std::string_view text) {
  return Parser(text).parse();
}

std::string fused_shape_str(const FusedShape& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    const FusedDim& d = shape[i];
    if (d.kind == FusedDim::Kind::Infer) {
      out += "-1";
    } else if (d.kind == FusedDim::Kind::Size) {
      out += std::to_string(d.size);
    } else {
      out += "(";
      for (size_t j = 0; j < d.parts.size(); ++j) {
        out += (j > 0 ? ", " : "") + std::to_string(d.parts[j]);
      }
      out += ")";
    }
  }
  return out + ")";
}

SubParamLayout plain_layout(const Shape& weight_shape, int64_t partition_dim) {
  AUTOTP_ASSERT(weight_shape.size() == 2 && (partition_dim == 0 || partition_dim == 1),
                "plain layout of {} on dim {}", shape_str(weight_shape), partition_dim);
  return {weight_shape,
          partition_dim,
          {weight_shape[static_cast<size_t>(partition_dim)]},
          partition_dim == 0};
}

SubParamLayout infer_subparam_layout(const Shape& weight_shape, const FusedShape& shape,
                                     int64_t partition_dim, const std::string& layer) {
  const std::string spec = fused_shape_str(shape);
  auto fail_unless = [&](bool ok, const std::string& reason) {
    AUTOTP_CHECK(ok,
                 "layer '{}': fused shape {} with partition_dim {} does not fit its weight {}: "
                 "{}",
                 layer, spec, partition_dim, shape_str(weight_shape), reason);
  };
  fail_unless(weight_shape.size() == 2, "the weight must be 2-D [out_features, in_features]");
  const int64_t ndim = static_cast<int64_t>(shape.size());
  fail_unless(ndim >= 2, "the shape needs at least 2 dims (output dims, then in_features)");
  fail_unless(partition_dim >= 0 && partition_dim < ndim,
              fmt::format("partition_dim must be in [0, {})", ndim));
  const int64_t out = weight_shape[0], in = weight_shape[1];

  Shape dims(static_cast<size_t>(ndim), -1);  // -1: unknown
  int64_t equal_parts = 1;                    // k for "k equal sub-parameters"
  std::vector<int64_t> parts;
  for (int64_t d = 0; d < ndim; ++d) {
    const FusedDim& e = shape[static_cast<size_t>(d)];
    if (e.kind == FusedDim::Kind::Parts) {
      fail_unless(
          d == partition_dim,
          fmt::format("dim {} is a tuple of sub-sizes, but only the partition dim may be", d));
      fail_unless(!e.parts.empty(), "the tuple of sub-sizes is empty");
      int64_t sum = 0;
      for (int64_t p : e.parts) {
        fail_unless(p > 0, fmt::format("sub-size {} is not positive", p));
        sum += p;
      }
      dims[static_cast<size_t>(d)] = sum;
      parts = e.parts;
    } else if (e.kind == FusedDim::Kind::Size) {
      fail_unless(e.size > 0, fmt::format("size {} at dim {} is not positive", e.size, d));
      if (d == partition_dim) {
        equal_parts = e.size;  // k equal sub-parameters; the dim itself is inferred
      } else {
        dims[static_cast<size_t>(d)] = e.size;
      }
    }
  }
  int64_t unknown = 0, known_product = 1;
  for (int64_t v : dims) {
    if (v < 0) {
      ++unknown;
    } else {
      known_product *= v;
    }
  }
  if (unknown == 1) {
    fail_unless(known_product > 0 && (out * in) % known_product == 0,
                fmt::format("the known dims multiply to {}, which does not divide the {} "
                            "elements of the weight",
                            known_product, out * in));
    for (int64_t& v : dims) {
      if (v < 0) v = out * in / known_product;
    }
  } else if (unknown > 1) {
    fail_unless(ndim == 2, fmt::format("{} dims are unknown (-1 or a count of equal parts) in a "
                                       "{}-D view: the spec is ambiguous",
                                       unknown, ndim));
    for (size_t d = 0; d < 2; ++d) {
      if (dims[d] < 0) dims[d] = weight_shape[d];
    }
  }
  fail_unless(dims.back() == in,
              fmt::format("the last dim is {} but must be in_features {}", dims.back(), in));
  int64_t leading = 1;
  for (int64_t d = 0; d + 1 < ndim; ++d)
    leading *= dims[static_cast<size_t>(d)];
  fail_unless(leading == out,
              fmt::format("the output dims multiply to {} but out_features is {}", leading, out));
  const int64_t split_extent = dims[static_cast<size_t>(partition_dim)];
  if (parts.empty()) {
    fail_unless(split_extent % equal_parts == 0,
                fmt::format("dim {} of size {} does not divide into {} equal sub-parameters",
                            partition_dim, split_extent, equal_parts));
    parts.assign(static_cast<size_t>(equal_parts), split_extent / equal_parts);
  }
  return {dims, partition_dim, parts, partition_dim < ndim - 1};
}

}  // namespace autotp
