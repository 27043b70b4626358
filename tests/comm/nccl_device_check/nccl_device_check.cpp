// GPU check of the communicators (run by run_on_device.sh, not by ctest): one rank per GPU
// goes through NCCL; several ranks on one GPU are detected and go through MPI, staging CUDA
// tensors through host memory. Prints one line per check; exits non-zero on a failure.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/comm/device_selection.h"
#include "core/comm/mpi_session.h"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

using autotp::Device;
using autotp::DType;
using autotp::Tensor;

// rank r's values: small integers, exact in every dtype.
Tensor values(int64_t n, int rank, DType dtype, Device device) {
  std::vector<double> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<double>((i * 3 + rank * 5) % 7) - 3.0;
  return Tensor::from_vector(v, {n}, dtype).to(device);
}

}  // namespace

int main(int argc, char** argv) {
  autotp::MpiSession session(&argc, &argv);
  const int rank = session.world_rank(), size = session.world_size();
  const autotp::DevicePlan plan = autotp::choose_devices();
  std::printf("rank %d of %d: %d GPU(s), device %s, backend %s, shares_gpu %d, notice '%s'\n", rank,
              size, autotp::cuda_device_count(), plan.device.str().c_str(),
              plan.backend == autotp::CommBackend::Nccl ? "nccl" : "mpi", plan.shares_gpu ? 1 : 0,
              plan.notice.c_str());
  check(plan.device.is_cuda(), "a GPU was chosen");
  check((plan.backend == autotp::CommBackend::Nccl) == (size <= autotp::cuda_device_count()),
        "NCCL exactly when every rank has its own GPU");
  auto comm = autotp::make_world_communicator(plan, MPI_COMM_WORLD, autotp::CommOptions{60.0});
  check(comm->backend() == (plan.backend == autotp::CommBackend::Nccl ? "nccl" : "mpi"),
        "backend " + comm->backend());
  comm->enable_recording({.verify_each = true});

  for (DType dtype : {DType::F32, DType::BF16, DType::I64}) {
    const std::string name = std::string(autotp::dtype_name(dtype));
    std::vector<double> sum(7, 0.0), mx(7, -1e9);
    for (int r = 0; r < size; ++r) {
      const std::vector<double> v = values(7, r, dtype, Device::cpu()).to_vector();
      for (size_t i = 0; i < 7; ++i) {
        sum[i] += v[i];
        mx[i] = std::max(mx[i], v[i]);
      }
    }
    const Tensor a = values(7, rank, dtype, plan.device);
    comm->all_reduce(a);
    check(a.to_vector() == sum, "all_reduce sum " + name);
    const Tensor b = values(7, rank, dtype, plan.device);
    autotp::WorkHandle w = comm->all_reduce_async(b, autotp::ReduceOp::Max);
    w->wait();
    check(b.to_vector() == mx, "async all_reduce max " + name);
  }
  {
    const Tensor a = values(6, rank, DType::F32, plan.device);
    comm->all_reduce(a, autotp::ReduceOp::Avg);
    std::vector<double> expected(6, 0.0);
    for (int r = 0; r < size; ++r) {
      const std::vector<double> v = values(6, r, DType::F32, Device::cpu()).to_vector();
      for (size_t i = 0; i < 6; ++i)
        expected[i] += v[i] / size;
    }
    bool close = true;
    const std::vector<double> got = a.to_vector();
    for (size_t i = 0; i < 6; ++i)
      close = close && std::abs(got[i] - expected[i]) < 1e-6;
    check(close, "all_reduce avg f32");
  }
  {
    // Uneven all_gather along dim 0: rank r holds r + 1 elements.
    std::vector<int64_t> sizes;
    std::vector<double> expected;
    for (int r = 0; r < size; ++r) {
      sizes.push_back(r + 1);
      const std::vector<double> v = values(r + 1, r, DType::F32, Device::cpu()).to_vector();
      expected.insert(expected.end(), v.begin(), v.end());
    }
    const Tensor got = comm->all_gather(values(rank + 1, rank, DType::F32, plan.device), 0, sizes);
    check(got.device() == plan.device && got.to_vector() == expected, "uneven all_gather f32");
    // Uneven reduce_scatter along dim 0 of a [total] vector.
    const int64_t total = static_cast<int64_t>(expected.size());
    const Tensor piece =
        comm->reduce_scatter(values(total, rank, DType::F32, plan.device), 0, sizes);
    std::vector<double> full(static_cast<size_t>(total), 0.0);
    for (int r = 0; r < size; ++r) {
      const std::vector<double> v = values(total, r, DType::F32, Device::cpu()).to_vector();
      for (size_t i = 0; i < full.size(); ++i)
        full[i] += v[i];
    }
    const int64_t offset = rank * (rank + 1) / 2;
    check(piece.to_vector() ==
              std::vector<double>(full.begin() + offset, full.begin() + offset + rank + 1),
          "uneven reduce_scatter f32");
  }
  {
    const Tensor t = values(5, rank, DType::BF16, plan.device);
    comm->broadcast(t, size - 1);
    check(t.to_vector() == values(5, size - 1, DType::BF16, Device::cpu()).to_vector(),
          "broadcast bf16 from the last rank");
    comm->barrier();
    comm->check_sequence();
    check(comm->recorder()->current().total_calls() == 11,
          "recorded " + comm->recorder()->current().str());
  }
  {
    // Host tensors work on both backends (NCCL stages them through the device and copies the
    // result back when waited): a trainer's loss sums and norms take this path.
    const Tensor host = Tensor::full({3}, static_cast<double>(rank + 1), DType::F64);
    comm->all_reduce(host);
    check(host.to_vector() == std::vector<double>(3, size * (size + 1) / 2.0),
          "all_reduce of a host f64 tensor on " + comm->backend());
    const Tensor gathered =
        comm->all_gather(Tensor::full({2}, static_cast<double>(rank), DType::F64), 0);
    std::vector<double> want;
    for (int r = 0; r < size; ++r)
      want.insert(want.end(), 2, static_cast<double>(r));
    check(gathered.device().is_cpu() && gathered.to_vector() == want,
          "all_gather of a host tensor stays on the host");
  }
  std::printf("rank %d: %d failure(s)\n", rank, failures);
  return failures == 0 ? 0 : 1;
}
