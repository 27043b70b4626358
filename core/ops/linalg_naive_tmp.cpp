// TEMPORARY naive matmul/linear (host loops, CPU f32/f64) so the Module/layers branch links
// and tests before core/ops/linalg.cpp lands. Delete this file at merge time.
#include <vector>

#include "core/autograd/node.h"
#include "core/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"

namespace autotp::ops {

namespace {

// out [batch..., M, N] = a [batch..., M, K] @ b [batch..., K, N], both already broadcast to
// the same batch shape. No autograd.
Tensor matmul_forward(const Tensor& a_in, const Tensor& b_in) {
  const int64_t m = a_in.size(-2), k = a_in.size(-1), n = b_in.size(-1);
  Shape batch_a(a_in.shape().begin(), a_in.shape().end() - 2);
  Shape batch_b(b_in.shape().begin(), b_in.shape().end() - 2);
  const Shape batch = broadcast_shapes(batch_a, batch_b);
  Shape a_shape = batch, b_shape = batch, out_shape = batch;
  a_shape.insert(a_shape.end(), {m, k});
  b_shape.insert(b_shape.end(), {k, n});
  out_shape.insert(out_shape.end(), {m, n});
  const Tensor a = a_in.detach().expand(a_shape).contiguous();
  const Tensor b = b_in.detach().expand(b_shape).contiguous();
  Tensor out = Tensor::empty(out_shape, a_in.dtype(), a_in.device());
  const int64_t batches = shape_numel(batch);
  dispatch_float(a_in.dtype(), "matmul", [&]<typename T>(TypeTag<T>) {
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    T* po = out.data<T>();
    for (int64_t bi = 0; bi < batches; ++bi) {
      const T* A = pa + bi * m * k;
      const T* B = pb + bi * k * n;
      T* O = po + bi * m * n;
      for (int64_t i = 0; i < m; ++i) {
        std::vector<double> row(static_cast<size_t>(n), 0.0);
        for (int64_t p = 0; p < k; ++p) {
          const double av = static_cast<double>(A[i * k + p]);
          for (int64_t j = 0; j < n; ++j) row[j] += av * static_cast<double>(B[p * n + j]);
        }
        for (int64_t j = 0; j < n; ++j) O[i * n + j] = static_cast<T>(row[j]);
      }
    }
  });
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  AUTOTP_CHECK(a.defined() && b.defined(), "matmul: undefined operand");
  AUTOTP_CHECK(a.dim() >= 2 && b.dim() >= 2,
               "matmul: operands need at least 2 dims (got {} and {})", shape_str(a.shape()),
               shape_str(b.shape()));
  AUTOTP_CHECK(a.size(-1) == b.size(-2), "matmul: inner sizes differ: {} @ {}",
               shape_str(a.shape()), shape_str(b.shape()));
  AUTOTP_CHECK(a.dtype() == b.dtype(), "matmul: dtype mismatch ({} vs {})", dtype_name(a.dtype()),
               dtype_name(b.dtype()));
  AUTOTP_CHECK(a.device().is_cpu() && b.device().is_cpu(),
               "matmul: the temporary naive matmul runs on CPU tensors only");
  Tensor out = matmul_forward(a, b);
  const Tensor sa = a.detach(), sb = b.detach();
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  return record_op(out, "MatmulBackward", {&a, &b}, [sa, sb, ga, gb](const Tensor& g) {
    // g [batch..., M, N]; da = g @ b^T [batch..., M, K]; db = a^T @ g [batch..., K, N].
    return std::vector<Tensor>{
        ga ? sum_to_shape(matmul(g, sb.transpose(-2, -1)), sa.shape()) : Tensor(),
        gb ? sum_to_shape(matmul(sa.transpose(-2, -1), g), sb.shape()) : Tensor()};
  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  AUTOTP_CHECK(x.defined() && weight.defined(), "linear: undefined operand");
  AUTOTP_CHECK(weight.dim() == 2, "linear: weight must be [out, in], got {}",
               shape_str(weight.shape()));
  AUTOTP_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1),
               "linear: input {} does not end in in_features {} of weight {}", shape_str(x.shape()),
               weight.size(1), shape_str(weight.shape()));
  AUTOTP_CHECK(!bias.defined() || bias.shape() == Shape{weight.size(0)},
               "linear: bias {} does not match out_features {}", shape_str(bias.shape()),
               weight.size(0));
  // x [..., in] @ weight^T [in, out] -> [..., out]
  const Tensor x2 = x.dim() == 1 ? x.unsqueeze(0) : x;
  Tensor out = matmul(x2, weight.transpose(0, 1));
  if (x.dim() == 1) out = out.squeeze(0);
  return bias.defined() ? add(out, bias) : out;
}

}  // namespace autotp::ops
