// CPU reference attention kernels (GQA, optional causal mask), forward and backward.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace autotp::kernels::cpu {

namespace {

template <typename T>
double dot(const T* a, const T* b, int64_t dim) {
  double acc = 0.0;
  for (int64_t d = 0; d < dim; ++d)
    acc += static_cast<double>(a[d]) * static_cast<double>(b[d]);
  return acc;
}

// Number of keys query row i may attend to.
int64_t visible_keys(int64_t i, int64_t seq, bool causal) {
  return causal ? i + 1 : seq;
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t batch,
                       int64_t hq, int64_t hkv, int64_t seq, int64_t dim, double scale,
                       bool causal) {
  const int64_t group = hq / hkv;
  std::vector<double> s(static_cast<size_t>(seq));
  std::vector<double> acc(static_cast<size_t>(dim));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < hq; ++h) {
      const int64_t q_head = (b * hq + h) * seq;
      const int64_t kv_head = (b * hkv + h / group) * seq;
      for (int64_t i = 0; i < seq; ++i) {
        const T* qi = q + (q_head + i) * dim;
        const int64_t n = visible_keys(i, seq, causal);
        double m = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          s[j] = scale * dot(qi, k + (kv_head + j) * dim, dim);
          m = std::fmax(m, s[j]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j < n; ++j)
          sum += std::exp(s[j] - m);
        const double row_lse = m + std::log(sum);
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j < n; ++j) {
          const double p = std::exp(s[j] - row_lse);
          const T* vj = v + (kv_head + j) * dim;
          for (int64_t d = 0; d < dim; ++d)
            acc[d] += p * static_cast<double>(vj[d]);
        }
        T* oi = out + (q_head + i) * dim;
        for (int64_t d = 0; d < dim; ++d)
          oi[d] = static_cast<T>(acc[d]);
        lse[q_head + i] = static_cast<T>(row_lse);
      }
    }
  }
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* q, const T* k, const T* v, const T* lse,
                        const T* dout, int64_t batch, int64_t hq, int64_t hkv, int64_t seq,
                        int64_t dim, double scale, bool causal) {
  const int64_t group = hq / hkv;
  const size_t kv_elems = static_cast<size_t>(batch * hkv * seq * dim);
  std::vector<double> dk_acc(kv_elems, 0.0), dv_acc(kv_elems, 0.0);
  std::vector<double> p(static_cast<size_t>(seq)), ds(static_cast<size_t>(seq));
  std::vector<double> dq_acc(static_cast<size_t>(dim));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < hq; ++h) {
      const int64_t q_head = (b * hq + h) * seq;
      const int64_t kv_head = (b * hkv + h / group) * seq;
      for (int64_t i = 0; i < seq; ++i) {
        const T* qi = q + (q_head + i) * dim;
        const T* doi = dout + (q_head + i) * dim;
        const double row_lse = static_cast<double>(lse[q_head + i]);
        const int64_t n = visible_keys(i, seq, causal);
        double delta = 0.0;  // sum_j p[j] * dp[j]
        for (int64_t j = 0; j < n; ++j) {
          p[j] = std::exp(scale * dot(qi, k + (kv_head + j) * dim, dim) - row_lse);
          ds[j] = dot(doi, v + (kv_head + j) * dim, dim);  // dp[j] for now
          delta += p[j] * ds[j];
        }
        std::fill(dq_acc.begin(), dq_acc.end(), 0.0);
        for (int64_t j = 0; j < n; ++j) {
          ds[j] = p[j] * (ds[j] - delta);
          const T* kj = k + (kv_head + j) * dim;
          double* dkj = dk_acc.data() + (kv_head + j) * dim;
          double* dvj = dv_acc.data() + (kv_head + j) * dim;
          for (int64_t d = 0; d < dim; ++d) {
            dq_acc[d] += ds[j] * static_cast<double>(kj[d]);
            dkj[d] += scale * ds[j] * static_cast<double>(qi[d]);
            dvj[d] += p[j] * static_cast<double>(doi[d]);
          }
        }
        T* dqi = dq + (q_head + i) * dim;
        for (int64_t d = 0; d < dim; ++d)
          dqi[d] = static_cast<T>(scale * dq_acc[d]);
      }
    }
  }
  for (size_t e = 0; e < kv_elems; ++e) {
    dk[e] = static_cast<T>(dk_acc[e]);
    dv[e] = static_cast<T>(dv_acc[e]);
  }
}

#define AUTOTP_INSTANTIATE(T)                                                                \
  template void attention_forward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, \
                                     int64_t, int64_t, int64_t, double, bool);               \
  template void attention_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,    \
                                      const T*, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                      double, bool);
AUTOTP_INSTANTIATE(float)
AUTOTP_INSTANTIATE(double)
#undef AUTOTP_INSTANTIATE

}  // namespace autotp::kernels::cpu
