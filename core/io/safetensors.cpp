// SafetensorsFile (validated header, pread of single tensors) and save_safetensors (the reference
// library's tensor order and header bytes, written through AtomicFileWriter).
#include "core/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <set>

#include "core/io/atomic_file.h"
#include "core/io/json.h"

namespace autotp::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; big-endian hosts are not supported");

namespace {

// The reference implementation's header limit.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct FileDType {
  std::string_view name;
  uint32_t bits;
  std::optional<DType> dtype;
};

// Every dtype of the format, in the reference implementation's declaration order, which is
// also the order (reversed) in which its writer lays out tensors.
constexpr std::array<FileDType, 22> kFileDTypes = {{
    {"BOOL", 8, std::nullopt},        {"F4", 4, std::nullopt},
    {"F6_E2M3", 6, std::nullopt},     {"F6_E3M2", 6, std::nullopt},
    {"U8", 8, std::nullopt},          {"I8", 8, std::nullopt},
    {"F8_E5M2", 8, std::nullopt},     {"F8_E4M3", 8, std::nullopt},
    {"F8_E8M0", 8, std::nullopt},     {"F8_E4M3FNUZ", 8, std::nullopt},
    {"F8_E5M2FNUZ", 8, std::nullopt}, {"I16", 16, std::nullopt},
    {"U16", 16, std::nullopt},        {"F16", 16, DType::F16},
    {"BF16", 16, DType::BF16},        {"I32", 32, DType::I32},
    {"U32", 32, std::nullopt},        {"F32", 32, DType::F32},
    {"C64", 64, std::nullopt},        {"F64", 64, DType::F64},
    {"I64", 64, DType::I64},          {"U64", 64, std::nullopt},
}};

const FileDType* find_file_dtype(std::string_view name) {
  for (const FileDType& d : kFileDTypes) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

size_t file_dtype_rank(DType dtype) {
  const std::string_view name = safetensors_dtype_name(dtype);
  for (size_t i = 0; i < kFileDTypes.size(); ++i) {
    if (kFileDTypes[i].name == name) return i;
  }
  AUTOTP_ASSERT(false, "dtype {} missing from the safetensors table", dtype_name(dtype));
}

std::string supported_names() {
  return "F32, F64, BF16, F16, I32, I64";
}

// Reads exactly `bytes` at `offset`; false when the file ends first.
bool pread_fully(int fd, void* data, uint64_t bytes, uint64_t offset) {
  char* p = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::pread(fd, p, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    bytes -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

// Parses one tensor entry of the header into `info`, checking its dtype and that its shape
// fills its byte range exactly.
SafetensorsTensorInfo parse_entry(const std::string& path, const std::string& name,
                                  const json::Value& entry) {
  AUTOTP_CHECK(entry.is_object(),
               "{}: tensor '{}': expected an object with dtype, shape and "
               "data_offsets, got {}",
               path, name, json::kind_name(entry.kind()));
  SafetensorsTensorInfo info;
  info.name = name;
  info.dtype_name = entry.get<std::string>("dtype");
  const FileDType* file_dtype = find_file_dtype(info.dtype_name);
  AUTOTP_CHECK(file_dtype != nullptr,
               "{}: tensor '{}' has unknown dtype '{}' (safetensors dtypes autotp reads: {})", path,
               name, info.dtype_name, supported_names());
  info.dtype = file_dtype->dtype;

  const json::Value& shape = entry["shape"];
  AUTOTP_CHECK(shape.is_array(), "{}: {}: expected an array of sizes, got {}", path, shape.path(),
               json::kind_name(shape.kind()));
  unsigned __int128 numel = 1;
  for (const json::Value& dim : shape.elements()) {
    const int64_t size = dim.as_int64();
    AUTOTP_CHECK(size >= 0, "{}: tensor '{}' has a negative size {} in its shape", path, name,
                 size);
    info.shape.push_back(size);
    numel *= static_cast<uint64_t>(size);
    AUTOTP_CHECK(numel <= (static_cast<unsigned __int128>(1) << 62),
                 "{}: tensor '{}' has an impossibly large shape {}", path, name,
                 shape_str(info.shape));
  }

  const json::Value& offsets = entry["data_offsets"];
  AUTOTP_CHECK(offsets.is_array() && offsets.size() == 2, "{}: {}: expected [begin, end], got {}",
               path, offsets.path(), offsets.dump());
  info.data_begin = offsets[0].as_uint64();
  info.data_end = offsets[1].as_uint64();
  AUTOTP_CHECK(info.data_begin <= info.data_end,
               "{}: tensor '{}' has data_offsets [{}, {}] that end before they begin", path, name,
               info.data_begin, info.data_end);

  const unsigned __int128 bits = numel * file_dtype->bits;
  AUTOTP_CHECK(bits % 8 == 0, "{}: tensor '{}' ({} {}) does not fill whole bytes", path, name,
               info.dtype_name, shape_str(info.shape));
  const auto expected = static_cast<uint64_t>(bits / 8);
  AUTOTP_CHECK(info.nbytes() == expected,
               "{}: tensor '{}' ({} {}) needs {} bytes, but its data_offsets [{}, {}] span {}",
               path, name, info.dtype_name, shape_str(info.shape), expected, info.data_begin,
               info.data_end, info.nbytes());
  return info;
}

}  // namespace

std::string_view safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "F32";
    case DType::F64:
      return "F64";
    case DType::BF16:
      return "BF16";
    case DType::F16:
      return "F16";
    case DType::I32:
      return "I32";
    case DType::I64:
      return "I64";
  }
  AUTOTP_ASSERT(false, "unknown dtype {}", static_cast<int>(dtype));
}

// ---- reading ---------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  AUTOTP_CHECK(fd_ >= 0, "cannot open safetensors file '{}': {}", path_, std::strerror(errno));
  try {
    struct stat st {};
    AUTOTP_CHECK(::fstat(fd_, &st) == 0, "cannot stat '{}': {}", path_, std::strerror(errno));
    AUTOTP_CHECK(S_ISREG(st.st_mode), "'{}' is not a regular file", path_);
    file_bytes_ = static_cast<uint64_t>(st.st_size);

    uint8_t length_bytes[8] = {};
    AUTOTP_CHECK(file_bytes_ >= 8 && pread_fully(fd_, length_bytes, 8, 0),
                 "{}: truncated safetensors file: {} bytes, fewer than the 8-byte header length",
                 path_, file_bytes_);
    for (int i = 7; i >= 0; --i)
      header_bytes_ = (header_bytes_ << 8) | length_bytes[i];
    AUTOTP_CHECK(header_bytes_ <= kMaxHeaderBytes,
                 "{}: bad header length {} (more than the {}-byte limit): not a safetensors file",
                 path_, header_bytes_, kMaxHeaderBytes);
    AUTOTP_CHECK(8 + header_bytes_ <= file_bytes_,
                 "{}: truncated safetensors file: expected at least {} bytes (8 + a {}-byte "
                 "header), found {}",
                 path_, 8 + header_bytes_, header_bytes_, file_bytes_);

    std::string header(header_bytes_, '\0');
    AUTOTP_CHECK(pread_fully(fd_, header.data(), header_bytes_, 8),
                 "{}: the file ended while reading its header", path_);
    AUTOTP_CHECK(!header.empty() && header[0] == '{',
                 "{}: the header does not start with '{{': not a safetensors file", path_);
    const json::Value root = json::parse(header, path_);
    AUTOTP_CHECK(root.is_object(), "{}: the header is {}, expected an object", path_,
                 json::kind_name(root.kind()));

    for (size_t i = 0; i < root.size(); ++i) {
      const std::string& name = root.keys()[i];
      const json::Value& entry = root.elements()[i];
      if (name == "__metadata__") {
        AUTOTP_CHECK(entry.is_object(), "{}: __metadata__ must be an object of strings", path_);
        for (size_t k = 0; k < entry.size(); ++k) {
          metadata_[entry.keys()[k]] = entry.elements()[k].as_string();
        }
        continue;
      }
      tensors_.push_back(parse_entry(path_, name, entry));
    }

    // The tensors must tile the data buffer: sorted by offsets, each starts where the last ended.
    std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) {
      return std::pair(a.data_begin, a.data_end) < std::pair(b.data_begin, b.data_end);
    });
    uint64_t end = 0;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const SafetensorsTensorInfo& t = tensors_[i];
      AUTOTP_CHECK(t.data_begin >= end,
                   "{}: tensor '{}' (data_offsets [{}, {}]) overlaps "
                   "tensor '{}', which ends at {}",
                   path_, t.name, t.data_begin, t.data_end, tensors_[i - 1].name, end);
      AUTOTP_CHECK(t.data_begin == end,
                   "{}: a gap of {} bytes before tensor '{}' (data_offsets "
                   "[{}, {}]): the tensors must cover the data buffer contiguously",
                   path_, t.data_begin - end, t.name, t.data_begin, t.data_end);
      end = t.data_end;
      index_[t.name] = i;
    }
    const uint64_t expected = 8 + header_bytes_ + end;
    AUTOTP_CHECK(file_bytes_ >= expected,
                 "{}: truncated safetensors file: expected {} bytes (8 + a {}-byte header + {} "
                 "bytes of tensor data), found {}",
                 path_, expected, header_bytes_, end, file_bytes_);
    AUTOTP_CHECK(file_bytes_ == expected,
                 "{}: {} unexpected bytes after the tensor data (expected {} bytes, found {})",
                 path_, file_bytes_ - expected, expected, file_bytes_);
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      header_bytes_(other.header_bytes_),
      file_bytes_(other.file_bytes_),
      metadata_(std::move(other.metadata_)),
      tensors_(std::move(other.tensors_)),
      index_(std::move(other.index_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    header_bytes_ = other.header_bytes_;
    file_bytes_ = other.file_bytes_;
    metadata_ = std::move(other.metadata_);
    tensors_ = std::move(other.tensors_);
    index_ = std::move(other.index_);
  }
  return *this;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& t : tensors_)
    out.push_back(t.name);
  std::sort(out.begin(), out.end());
  return out;
}

bool SafetensorsFile::contains(std::string_view name) const {
  return index_.find(std::string(name)) != index_.end();
}

const SafetensorsTensorInfo& SafetensorsFile::info(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  AUTOTP_CHECK(it != index_.end(), "{}: no tensor named '{}' ({} tensors in the file)", path_, name,
               tensors_.size());
  return tensors_[it->second];
}

Tensor SafetensorsFile::load(std::string_view name, std::optional<DType> dtype) const {
  const SafetensorsTensorInfo& t = info(name);
  AUTOTP_CHECK(t.dtype.has_value(),
               "{}: tensor '{}' has dtype {}, which autotp cannot load "
               "(supported: {})",
               path_, t.name, t.dtype_name, supported_names());
  AUTOTP_ASSERT(fd_ >= 0, "load from a moved-from SafetensorsFile");
  Tensor out = Tensor::empty(t.shape, *t.dtype);
  AUTOTP_ASSERT(static_cast<uint64_t>(out.numel()) * out.itemsize() == t.nbytes(),
                "tensor '{}' size mismatch after validation", t.name);
  if (t.nbytes() > 0) {
    AUTOTP_CHECK(pread_fully(fd_, out.raw_data(), t.nbytes(), 8 + header_bytes_ + t.data_begin),
                 "{}: the file ended while reading tensor '{}' (was it truncated after opening?)",
                 path_, t.name);
  }
  return dtype ? out.to(*dtype) : out;
}

Tensor SafetensorsFile::load_elements(std::string_view name, int64_t begin, int64_t count) const {
  const SafetensorsTensorInfo& t = info(name);
  AUTOTP_CHECK(t.dtype.has_value(),
               "{}: tensor '{}' has dtype {}, which autotp cannot load "
               "(supported: {})",
               path_, t.name, t.dtype_name, supported_names());
  AUTOTP_CHECK(count >= 0, "{}: a negative element count {} for tensor '{}'", path_, count, t.name);
  const Tensor out = Tensor::empty({count}, *t.dtype);
  read_elements(name, begin, out);
  return out;
}

void SafetensorsFile::read_elements(std::string_view name, int64_t begin, const Tensor& out) const {
  const SafetensorsTensorInfo& t = info(name);
  AUTOTP_CHECK(t.dtype.has_value() && out.dtype() == *t.dtype,
               "{}: tensor '{}' has dtype {}, cannot be read into a {} tensor", path_, t.name,
               t.dtype_name, dtype_name(out.dtype()));
  AUTOTP_ASSERT(out.is_contiguous() && out.device().is_cpu(),
                "read_elements needs a contiguous CPU destination");
  const int64_t numel = shape_numel(t.shape), count = out.numel();
  AUTOTP_CHECK(begin >= 0 && begin + count <= numel,
               "{}: elements [{}, {}) of tensor '{}' lie outside its {} elements", path_, begin,
               begin + count, t.name, numel);
  AUTOTP_ASSERT(fd_ >= 0, "load from a moved-from SafetensorsFile");
  const uint64_t item = out.itemsize(), bytes = static_cast<uint64_t>(count) * item;
  if (bytes == 0) return;
  const uint64_t at = 8 + header_bytes_ + t.data_begin + static_cast<uint64_t>(begin) * item;
  AUTOTP_CHECK(pread_fully(fd_, out.raw_data(), bytes, at),
               "{}: the file ended while reading tensor '{}' (was it truncated after opening?)",
               path_, t.name);
}

std::map<std::string, Tensor> SafetensorsFile::load_all(std::optional<DType> dtype) const {
  std::map<std::string, Tensor> out;
  for (const auto& t : tensors_)
    out.emplace(t.name, load(t.name, dtype));
  return out;
}

std::map<std::string, Tensor> load_safetensors(const std::string& path,
                                               std::optional<DType> dtype) {
  return SafetensorsFile(path).load_all(dtype);
}

// ---- writing ---------------------------------------------------------------------

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::set<std::string_view> seen;
  for (const auto& [name, tensor] : tensors) {
    AUTOTP_CHECK(!name.empty(), "{}: cannot save a tensor with an empty name", path);
    AUTOTP_CHECK(name != "__metadata__", "{}: '__metadata__' is reserved, not a tensor name", path);
    AUTOTP_CHECK(seen.insert(name).second, "{}: tensor name '{}' appears twice", path, name);
    AUTOTP_CHECK(tensor.defined(), "{}: tensor '{}' is undefined", path, name);
  }

  // The reference writer's order: widest dtype first (its dtype declaration order, reversed),
  // then by name. This also keeps every tensor aligned to its element size.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const size_t ra = file_dtype_rank(tensors[a].second.dtype());
    const size_t rb = file_dtype_rank(tensors[b].second.dtype());
    return ra != rb ? ra > rb : tensors[a].first < tensors[b].first;
  });

  json::Value header = json::Value::object();
  if (!metadata.empty()) {
    json::Value meta = json::Value::object();
    for (const auto& [key, value] : metadata)
      meta.set(key, value);
    header.set("__metadata__", std::move(meta));
  }
  uint64_t offset = 0;
  for (size_t i : order) {
    const Tensor& t = tensors[i].second;
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.itemsize();
    json::Value shape = json::Value::array();
    for (int64_t size : t.shape())
      shape.push(size);
    json::Value entry = json::Value::object();
    entry.set("dtype", safetensors_dtype_name(t.dtype()));
    entry.set("shape", std::move(shape));
    entry.set("data_offsets", json::Value::array().push(offset).push(offset + bytes));
    header.set(tensors[i].first, std::move(entry));
    offset += bytes;
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  write_file_atomically(path, [&](AtomicFileWriter& out) {
    uint8_t length_bytes[8];
    uint64_t n = header_text.size();
    for (uint8_t& b : length_bytes) {
      b = static_cast<uint8_t>(n & 0xff);
      n >>= 8;
    }
    out.write(length_bytes, 8);
    out.write(header_text);
    for (size_t i : order) {
      const Tensor host = tensors[i].second.detach().to(Device::cpu()).contiguous();
      out.write(host.raw_data(), static_cast<size_t>(host.numel()) * host.itemsize());
    }
  });
}

}  // namespace autotp::io
