// Communicator front end: argument checks, layout of uneven gathers/scatters along any dim
// onto flat backend buffers, Avg/Max rules, and the recording mode's cross-rank checks.
#include "core/comm/communicator.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/autograd/grad_mode.h"

namespace autotp {

namespace {

// ---- wire format of recording-mode control messages -----------------------------------

enum class WireType : uint8_t { Collective = 1, SequenceCheck = 2, Log = 3 };

template <typename T>
void put(std::vector<uint8_t>& out, const T& value) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

template <typename T>
T get(const std::vector<uint8_t>& in, size_t& at) {
  AUTOTP_ASSERT(at + sizeof(T) <= in.size(), "short control message ({} bytes)", in.size());
  T value;
  std::memcpy(&value, in.data() + at, sizeof(T));
  at += sizeof(T);
  return value;
}

void put_desc(std::vector<uint8_t>& out, const CollectiveDesc& d) {
  put(out, static_cast<uint8_t>(d.kind));
  put(out, static_cast<uint8_t>(d.op));
  put(out, static_cast<uint8_t>(d.dtype));
  put(out, d.numel);
  put(out, d.arg);
  put(out, d.layout_hash);
}

CollectiveDesc get_desc(const std::vector<uint8_t>& in, size_t& at) {
  CollectiveDesc d;
  d.kind = static_cast<CollectiveKind>(get<uint8_t>(in, at));
  d.op = static_cast<ReduceOp>(get<uint8_t>(in, at));
  d.dtype = static_cast<DType>(get<uint8_t>(in, at));
  d.numel = get<int64_t>(in, at);
  d.arg = get<int64_t>(in, at);
  d.layout_hash = get<uint64_t>(in, at);
  return d;
}

// What one rank said in a control exchange, in words.
std::string describe_message(const std::vector<uint8_t>& msg) {
  size_t at = 0;
  const auto type = static_cast<WireType>(get<uint8_t>(msg, at));
  const int64_t seq = get<int64_t>(msg, at);
  if (type == WireType::Collective) {
    return fmt::format("collective #{} {}", seq, get_desc(msg, at).str());
  }
  if (type == WireType::SequenceCheck) {
    return fmt::format("check_sequence() after collective #{}", seq - 1);
  }
  return "a sequence-log exchange";
}

uint64_t sizes_hash(const std::vector<int64_t>& sizes) {
  return hash_bytes(sizes.data(), sizes.size() * sizeof(int64_t));
}

int64_t product(const Shape& shape, int64_t from, int64_t to) {
  int64_t p = 1;
  for (int64_t d = from; d < to; ++d)
    p *= shape[static_cast<size_t>(d)];
  return p;
}

// Per-rank sizes along a dim: `given`, or `size` copies of `own`.
std::vector<int64_t> rank_sizes(const std::vector<int64_t>& given, int size, int64_t own) {
  return given.empty() ? std::vector<int64_t>(static_cast<size_t>(size), own) : given;
}

}  // namespace

Communicator::Communicator(int rank, int size, std::string name, CommOptions options)
    : rank_(rank), size_(size), name_(std::move(name)), options_(options) {
  AUTOTP_ASSERT(size >= 1 && rank >= 0 && rank < size, "rank {} of {}", rank, size);
}

Communicator::~Communicator() = default;

std::string Communicator::where(const std::string& what) const {
  return fmt::format("{} on communicator '{}' (rank {} of {})", what, name_, rank_, size_);
}

// ---- all_reduce -----------------------------------------------------------------------

WorkHandle Communicator::all_reduce_async(const Tensor& buffer, ReduceOp op) {
  AUTOTP_CHECK(buffer.defined(), "{}: the buffer is undefined", where("all_reduce"));
  AUTOTP_CHECK(buffer.is_contiguous(),
               "{}: the buffer of shape {} is not contiguous; reductions run in place on a "
               "contiguous buffer (reduce a .contiguous() tensor and use that tensor)",
               where("all_reduce"), shape_str(buffer.shape()));
  AUTOTP_CHECK(op != ReduceOp::Avg || is_floating(buffer.dtype()),
               "{}: avg needs a floating dtype, got {}", where("all_reduce"),
               dtype_name(buffer.dtype()));
  before_collective({CollectiveKind::AllReduce, op, buffer.dtype(), buffer.numel(), -1, 0});
  const Tensor flat = buffer.detach().view({buffer.numel()});
  WorkHandle work = do_all_reduce(flat, op);
  work->set_result(buffer);
  return work;
}

void Communicator::all_reduce(const Tensor& buffer, ReduceOp op) {
  all_reduce_async(buffer, op)->wait();
}

// ---- all_gather -----------------------------------------------------------------------

WorkHandle Communicator::all_gather_async(const Tensor& local_in, int64_t dim,
                                          const std::vector<int64_t>& sizes_in) {
  AUTOTP_CHECK(local_in.defined() && local_in.dim() >= 1,
               "{}: needs a tensor with at least one dim", where("all_gather"));
  dim = wrap_dim(dim, local_in.dim(), "all_gather");
  const Tensor local = local_in.detach();
  const std::vector<int64_t> sizes = rank_sizes(sizes_in, size_, local.size(dim));
  AUTOTP_CHECK(static_cast<int>(sizes.size()) == size_, "{}: {} sizes given for {} ranks",
               where("all_gather"), sizes.size(), size_);
  AUTOTP_CHECK(sizes[static_cast<size_t>(rank_)] == local.size(dim),
               "{}: this rank's tensor of shape {} has {} elements along dim {}, but the sizes "
               "say {}",
               where("all_gather"), shape_str(local.shape()), local.size(dim), dim,
               sizes[static_cast<size_t>(rank_)]);
  for (int64_t s : sizes) {
    AUTOTP_CHECK(s >= 0, "{}: negative size {} in the per-rank sizes", where("all_gather"), s);
  }
  const int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
  const int64_t outer = product(local.shape(), 0, dim);
  const int64_t inner = product(local.shape(), dim + 1, local.dim());
  Shape out_shape = local.shape();
  out_shape[static_cast<size_t>(dim)] = total;
  before_collective({CollectiveKind::AllGather, ReduceOp::Sum, local.dtype(), outer * total * inner,
                     dim, sizes_hash(sizes)});

  std::vector<int64_t> counts(sizes.size());
  for (size_t r = 0; r < sizes.size(); ++r)
    counts[r] = outer * sizes[r] * inner;
  const Tensor send = local.contiguous().view({local.numel()});
  Tensor out = Tensor::empty(out_shape, local.dtype(), local.device());
  if (outer == 1) {
    // Rank blocks are contiguous in the output: gather straight into it.
    WorkHandle work = do_all_gatherv(send, out.view({out.numel()}), counts);
    work->set_result(out);
    return work;
  }
  const Tensor recv = Tensor::empty({outer * total * inner}, local.dtype(), local.device());
  WorkHandle work = do_all_gatherv(send, recv, counts);
  work->then([recv, out, sizes, counts, dim, shape = local.shape()] {
    // Rank r's block is its local tensor, contiguous: copy it into its range along `dim`.
    NoGradGuard no_grad;
    int64_t at = 0, offset = 0;
    for (size_t r = 0; r < sizes.size(); ++r) {
      Shape block_shape = shape;
      block_shape[static_cast<size_t>(dim)] = sizes[r];
      out.narrow(dim, offset, sizes[r]).copy_(recv.narrow(0, at, counts[r]).view(block_shape));
      at += counts[r];
      offset += sizes[r];
    }
  });
  work->set_result(out);
  return work;
}

Tensor Communicator::all_gather(const Tensor& local, int64_t dim,
                                const std::vector<int64_t>& sizes) {
  WorkHandle work = all_gather_async(local, dim, sizes);
  work->wait();
  return work->result();
}

// ---- reduce_scatter -------------------------------------------------------------------

WorkHandle Communicator::reduce_scatter_async(const Tensor& input_in, int64_t dim,
                                              const std::vector<int64_t>& sizes_in, ReduceOp op) {
  AUTOTP_CHECK(input_in.defined() && input_in.dim() >= 1,
               "{}: needs a tensor with at least one dim", where("reduce_scatter"));
  dim = wrap_dim(dim, input_in.dim(), "reduce_scatter");
  AUTOTP_CHECK(op != ReduceOp::Avg || is_floating(input_in.dtype()),
               "{}: avg needs a floating dtype, got {}", where("reduce_scatter"),
               dtype_name(input_in.dtype()));
  const Tensor input = input_in.detach();
  const int64_t extent = input.size(dim);
  std::vector<int64_t> sizes = sizes_in;
  if (sizes.empty()) {
    AUTOTP_CHECK(extent % size_ == 0,
                 "{}: dim {} of size {} (shape {}) does not split evenly over {} ranks; pass "
                 "the per-rank sizes",
                 where("reduce_scatter"), dim, extent, shape_str(input.shape()), size_);
    sizes.assign(static_cast<size_t>(size_), extent / size_);
  }
  AUTOTP_CHECK(static_cast<int>(sizes.size()) == size_, "{}: {} sizes given for {} ranks",
               where("reduce_scatter"), sizes.size(), size_);
  int64_t total = 0;
  for (int64_t s : sizes) {
    AUTOTP_CHECK(s >= 0, "{}: negative size {} in the per-rank sizes", where("reduce_scatter"), s);
    total += s;
  }
  AUTOTP_CHECK(total == extent, "{}: the per-rank sizes sum to {} but dim {} of shape {} is {}",
               where("reduce_scatter"), total, dim, shape_str(input.shape()), extent);
  before_collective(
      {CollectiveKind::ReduceScatter, op, input.dtype(), input.numel(), dim, sizes_hash(sizes)});

  const int64_t outer = product(input.shape(), 0, dim);
  const int64_t inner = product(input.shape(), dim + 1, input.dim());
  std::vector<int64_t> counts(sizes.size());
  for (size_t r = 0; r < sizes.size(); ++r)
    counts[r] = outer * sizes[r] * inner;
  Tensor send;
  if (outer == 1) {
    send = input.contiguous().view({input.numel()});
  } else {
    // Lay out rank r's piece (a strided slice along `dim`) as the r-th contiguous block.
    NoGradGuard no_grad;
    send = Tensor::empty({input.numel()}, input.dtype(), input.device());
    int64_t at = 0, offset = 0;
    for (size_t r = 0; r < sizes.size(); ++r) {
      const Tensor piece = input.narrow(dim, offset, sizes[r]);
      send.narrow(0, at, counts[r]).view(piece.shape()).copy_(piece);
      at += counts[r];
      offset += sizes[r];
    }
  }
  Shape out_shape = input.shape();
  out_shape[static_cast<size_t>(dim)] = sizes[static_cast<size_t>(rank_)];
  Tensor out = Tensor::empty(out_shape, input.dtype(), input.device());
  WorkHandle work = do_reduce_scatterv(send, out.view({out.numel()}), counts, op);
  work->set_result(out);
  return work;
}

Tensor Communicator::reduce_scatter(const Tensor& input, int64_t dim,
                                    const std::vector<int64_t>& sizes, ReduceOp op) {
  WorkHandle work = reduce_scatter_async(input, dim, sizes, op);
  work->wait();
  return work->result();
}

// ---- broadcast, barrier, split ----------------------------------------------------------

WorkHandle Communicator::broadcast_async(const Tensor& buffer, int root) {
  AUTOTP_CHECK(buffer.defined(), "{}: the buffer is undefined", where("broadcast"));
  AUTOTP_CHECK(root >= 0 && root < size_, "{}: root {} is not a rank of this group (size {})",
               where("broadcast"), root, size_);
  AUTOTP_CHECK(buffer.is_contiguous(),
               "{}: the buffer of shape {} is not contiguous; broadcast writes in place into a "
               "contiguous buffer",
               where("broadcast"), shape_str(buffer.shape()));
  before_collective(
      {CollectiveKind::Broadcast, ReduceOp::Sum, buffer.dtype(), buffer.numel(), root, 0});
  WorkHandle work = do_broadcast(buffer.detach().view({buffer.numel()}), root);
  work->set_result(buffer);
  return work;
}

void Communicator::broadcast(const Tensor& buffer, int root) {
  broadcast_async(buffer, root)->wait();
}

WorkHandle Communicator::barrier_async() {
  before_collective({CollectiveKind::Barrier, ReduceOp::Sum, DType::F32, 0, -1, 0});
  return do_barrier();
}

void Communicator::barrier() {
  barrier_async()->wait();
}

std::shared_ptr<Communicator> Communicator::split(int color, int key, const std::string& name) {
  AUTOTP_CHECK(color >= 0, "{}: color {} must be non-negative", where("split"), color);
  return do_split(color, key, name);
}

std::vector<std::vector<uint8_t>> Communicator::exchange_bytes(const std::vector<uint8_t>& mine) {
  return do_exchange_bytes(mine);
}

// ---- recording mode -------------------------------------------------------------------

void Communicator::enable_recording(RecordingOptions options) {
  recorder_ = std::make_unique<CollectiveRecorder>(options);
}

void Communicator::before_collective(const CollectiveDesc& desc) {
  if (!recorder_) return;
  if (recorder_->options().verify_each) {
    std::vector<uint8_t> msg;
    put(msg, static_cast<uint8_t>(WireType::Collective));
    put(msg, recorder_->sequence_number());
    put_desc(msg, desc);
    const std::vector<std::vector<uint8_t>> all = do_exchange_bytes(msg);
    bool same = true;
    for (const auto& other : all)
      same = same && other == msg;
    if (!same) {
      std::string ranks;
      for (size_t r = 0; r < all.size(); ++r) {
        ranks += fmt::format("\n  rank {}: {}", r, describe_message(all[r]));
      }
      AUTOTP_FAIL(
          "collective mismatch on communicator '{}': the ranks are about to issue different "
          "collectives (this would hang or corrupt data):{}",
          name_, ranks);
    }
  }
  recorder_->record(desc);
}

void Communicator::check_sequence() {
  AUTOTP_CHECK(recorder_ != nullptr, "{}: recording is not enabled (call enable_recording())",
               where("check_sequence"));
  const std::vector<CollectiveDesc>& log = recorder_->log();
  std::vector<uint8_t> msg;
  put(msg, static_cast<uint8_t>(WireType::SequenceCheck));
  put(msg, recorder_->sequence_number());
  put(msg, recorder_->sequence_hash());
  const std::vector<std::vector<uint8_t>> all = do_exchange_bytes(msg);
  bool same = true;
  for (const auto& other : all)
    same = same && other == msg;
  if (same) {
    recorder_->mark_checked();
    return;
  }
  for (size_t r = 0; r < all.size(); ++r) {
    size_t at = 0;
    if (static_cast<WireType>(get<uint8_t>(all[r], at)) != WireType::SequenceCheck) {
      recorder_->mark_checked();
      AUTOTP_FAIL(
          "collective mismatch on communicator '{}': rank {} called check_sequence() while "
          "rank {} issued {}",
          name_, rank_, r, describe_message(all[r]));
    }
  }
  // The counts or hashes differ: exchange the logs to find the first differing collective.
  std::vector<uint8_t> mine;
  put(mine, static_cast<uint8_t>(WireType::Log));
  for (const CollectiveDesc& d : log)
    put_desc(mine, d);
  const std::vector<std::vector<uint8_t>> logs = do_exchange_bytes(mine);
  std::vector<std::vector<CollectiveDesc>> per_rank(logs.size());
  size_t longest = 0;
  for (size_t r = 0; r < logs.size(); ++r) {
    size_t at = 1;
    while (at < logs[r].size())
      per_rank[r].push_back(get_desc(logs[r], at));
    longest = std::max(longest, per_rank[r].size());
  }
  const int64_t first_seq = recorder_->sequence_number() - static_cast<int64_t>(log.size());
  recorder_->mark_checked();
  for (size_t i = 0; i < longest; ++i) {
    bool differs = false;
    for (size_t r = 0; r < per_rank.size(); ++r) {
      differs = differs || i >= per_rank[r].size() || i >= per_rank[0].size() ||
                !(per_rank[r][i] == per_rank[0][i]);
    }
    if (!differs) continue;
    std::string ranks;
    for (size_t r = 0; r < per_rank.size(); ++r) {
      ranks += fmt::format(
          "\n  rank {}: {}", r,
          i < per_rank[r].size()
              ? per_rank[r][i].str()
              : fmt::format("(none: it issued only {} collectives)", per_rank[r].size()));
    }
    AUTOTP_FAIL(
        "collective sequence mismatch on communicator '{}': the ranks first differ at "
        "collective #{}:{}",
        name_, first_seq + static_cast<int64_t>(i), ranks);
  }
  AUTOTP_FAIL("collective sequence mismatch on communicator '{}': the sequence hashes differ",
              name_);
}

}  // namespace autotp
