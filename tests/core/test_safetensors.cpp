// core/io safetensors: round trips of every dtype, byte equality with the reference library's
// file, one clear error per corruption, atomic saves, and sharded checkpoints as transformers
// writes them.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "core/io/atomic_file.h"
#include "core/io/json.h"
#include "core/io/safetensors.h"
#include "core/io/sharded_safetensors.h"

namespace autotp {
namespace {

namespace fs = std::filesystem;
using io::SafetensorsFile;
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

const std::string kDataDir = AUTOTP_TEST_DATA_DIR;

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("autotp_io_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }
  std::set<std::string> listing() const {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(path_))
      names.insert(e.path().filename().string());
    return names;
  }

 private:
  fs::path path_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A safetensors file by hand: 8-byte little-endian length, `header`, `data`.
std::string raw_file(const std::string& header, const std::string& data, uint64_t length) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  return out + header + data;
}
std::string raw_file(const std::string& header, const std::string& data) {
  return raw_file(header, data, header.size());
}

// The bytes of a tensor's elements, row-major.
std::string tensor_bytes(const Tensor& t) {
  const Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.raw_data()),
                     static_cast<size_t>(c.numel()) * c.itemsize());
}

void expect_identical(const Tensor& actual, const Tensor& expected, const std::string& name) {
  EXPECT_EQ(actual.dtype(), expected.dtype()) << name;
  EXPECT_EQ(actual.shape(), expected.shape()) << name;
  EXPECT_EQ(tensor_bytes(actual), tensor_bytes(expected)) << name << ": bytes differ";
}

template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR_CONTAINS(statement, needle)                                                  \
  do {                                                                                            \
    const std::string message_ = error_of([&] { (void)(statement); });                            \
    EXPECT_NE(message_.find(needle), std::string::npos)                                           \
        << "expected an autotp::Error containing '" << (needle) << "', got '" << message_ << "'"; \
  } while (0)

Tensor values(const std::vector<double>& v, const Shape& shape, DType dtype) {
  return Tensor::from_vector(v, shape, dtype);
}

// Distinct, non-trivial values of every dtype, with 0-dim and empty tensors.
NamedTensors sample_tensors() {
  std::vector<double> f(15);
  for (size_t i = 0; i < f.size(); ++i)
    f[i] = static_cast<double>(i) * 0.37 - 2.0;
  return {
      {"w.f32", values(f, {3, 5}, DType::F32)},
      {"w.bf16", values({1.0, -0.5, 3.140625, 1e30, -0.0, 7.0, 0.01171875}, {7}, DType::BF16)},
      {"w.f16", values({0.5, -1.25, 65504.0, 6.103515625e-05, 1e-7, -3.0}, {2, 3}, DType::F16)},
      {"w.f64", values({0.1 + 0.2}, {}, DType::F64)},  // 0-dim
      {"ids", Tensor::from_vector_i64({0, -1, std::numeric_limits<int64_t>::max(),
                                       std::numeric_limits<int64_t>::min(), 42},
                                      {5})},
      {"ids32", Tensor::from_vector_i64({7, -2147483648LL, 2147483647LL}, {3}, DType::I32)},
      {"empty.f32", Tensor::zeros({0, 4}, DType::F32)},
      {"empty.bf16", Tensor::zeros({3, 0}, DType::BF16)},
  };
}

// ---- round trips -------------------------------------------------------------------

TEST(SafetensorsRoundTrip, EveryDtypeIncludingZeroDimAndEmptyTensorsReadsBackBitExact) {
  TempDir dir;
  const std::string path = dir.file("t.safetensors");
  const NamedTensors tensors = sample_tensors();
  io::save_safetensors(path, tensors, {{"format", "pt"}, {"step", "12"}});

  const SafetensorsFile file(path);
  EXPECT_EQ(file.metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}, {"step", "12"}}));
  EXPECT_EQ(file.tensors().size(), tensors.size());
  EXPECT_EQ(file.header_bytes() % 8, 0u);
  uint64_t data_bytes = 0;
  for (const auto& [name, t] : tensors) {
    const io::SafetensorsTensorInfo& info = file.info(name);
    EXPECT_EQ(info.dtype, t.dtype()) << name;
    EXPECT_EQ(info.dtype_name, io::safetensors_dtype_name(t.dtype())) << name;
    EXPECT_EQ(info.shape, t.shape()) << name;
    EXPECT_EQ(info.nbytes(), static_cast<uint64_t>(t.numel()) * t.itemsize()) << name;
    data_bytes += info.nbytes();
  }
  EXPECT_EQ(file.file_bytes(), 8 + file.header_bytes() + data_bytes);
  EXPECT_EQ(fs::file_size(path), file.file_bytes());

  for (const auto& [name, t] : tensors)
    expect_identical(file.load(name), t, name);
  const std::map<std::string, Tensor> all = file.load_all();
  ASSERT_EQ(all.size(), tensors.size());
  for (const auto& [name, t] : tensors)
    expect_identical(all.at(name), t, name);
  EXPECT_EQ(all.at("w.f64").dim(), 0);
  EXPECT_EQ(all.at("w.f64").item(), 0.1 + 0.2);
}

TEST(SafetensorsRoundTrip, NonContiguousViewsAreSavedInRowMajorOrder) {
  TempDir dir;
  const std::string path = dir.file("views.safetensors");
  const Tensor base = values({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {3, 4}, DType::F32);
  io::save_safetensors(path, {{"t", base.transpose(0, 1)}, {"n", base.narrow(1, 1, 2)}});
  const SafetensorsFile file(path);
  EXPECT_EQ(file.load("t").shape(), (Shape{4, 3}));
  EXPECT_EQ(file.load("t").to_vector(),
            (std::vector<double>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  EXPECT_EQ(file.load("n").to_vector(), (std::vector<double>{1, 2, 5, 6, 9, 10}));
}

TEST(SafetensorsRoundTrip, LoadConvertsToARequestedDtype) {
  TempDir dir;
  const std::string path = dir.file("c.safetensors");
  const Tensor bf = values({1.0, -0.375, 300.0}, {3}, DType::BF16);
  const Tensor f = values({0.1, 1.0 / 3.0, -2.5}, {3}, DType::F32);
  io::save_safetensors(path, {{"bf", bf}, {"f", f}});
  const SafetensorsFile file(path);
  const Tensor widened = file.load("bf", DType::F32);
  EXPECT_EQ(widened.dtype(), DType::F32);
  EXPECT_EQ(widened.to_vector(), (std::vector<double>{1.0, -0.375, 300.0}));
  expect_identical(file.load("f", DType::BF16), f.to(DType::BF16), "f as bf16");
  EXPECT_EQ(file.load_all(DType::F64).at("f").dtype(), DType::F64);
}

TEST(SafetensorsRoundTrip, AnElementRangeReadsThoseElementsOnlyAndARangeBeyondIsNamed) {
  TempDir dir;
  const std::string path = dir.file("r.safetensors");
  const Tensor first = values({9, 8}, {2}, DType::F32);
  const Tensor flat = values({0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {3, 4}, DType::F64);
  io::save_safetensors(path, {{"a", first}, {"flat", flat}});
  const SafetensorsFile file(path);
  const Tensor middle = file.load_elements("flat", 3, 6);
  EXPECT_EQ(middle.dtype(), DType::F64);
  EXPECT_EQ(middle.shape(), (Shape{6}));
  EXPECT_EQ(middle.to_vector(), (std::vector<double>{3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(file.load_elements("flat", 0, 1).to_vector(), (std::vector<double>{0.5}));
  EXPECT_EQ(file.load_elements("a", 1, 1).to_vector(), (std::vector<double>{8}));
  EXPECT_EQ(file.load_elements("flat", 12, 0).numel(), 0);
  EXPECT_ERROR_CONTAINS(file.load_elements("flat", 10, 3), path);
  EXPECT_ERROR_CONTAINS(file.load_elements("flat", 10, 3),
                        "elements [10, 13) of tensor 'flat' lie outside its 12 elements");
  EXPECT_ERROR_CONTAINS(file.load_elements("nope", 0, 1), "no tensor named 'nope'");
}

TEST(SafetensorsRoundTrip, SavesCudaTensorsThroughTheHost_CUDA) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: CUDA tensors cannot be created here";
  TempDir dir;
  const std::string path = dir.file("cuda.safetensors");
  const NamedTensors host = sample_tensors();
  NamedTensors on_device;
  for (const auto& [name, t] : host)
    on_device.emplace_back(name, t.to(Device::cuda()));
  io::save_safetensors(path, on_device);
  const std::map<std::string, Tensor> loaded = io::load_safetensors(path);
  for (const auto& [name, t] : host)
    expect_identical(loaded.at(name), t, name);
}

// ---- the reference library's file ----------------------------------------------------

// The tensors of tests/data/golden.safetensors, from the literals in
// tools/golden/make_safetensors_golden.py, in a different order than the writer lays them out.
NamedTensors golden_tensors() {
  return {
      {"embed.weight", values({1.5, -2.25, 0.1, -0.0, 1e30, 7.0}, {2, 3}, DType::F32)},
      {"norm.weight", values({1.0, -0.375, 300.0}, {3}, DType::BF16)},
      {"half", values({0.5, -1.25, 65504.0, 6.103515625e-05}, {2, 2}, DType::F16)},
      {"scalar", values({3.141592653589793}, {}, DType::F64)},
      {"ids",
       Tensor::from_vector_i64(
           {0, -1, std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()}, {4})},
      {"counts", Tensor::from_vector_i64({7, -2147483648LL}, {2}, DType::I32)},
      {"empty", Tensor::zeros({0, 3}, DType::F32)},
  };
}

TEST(SafetensorsGolden, ReadsTheReferenceLibrarysFileExactly) {
  const SafetensorsFile file(kDataDir + "/golden.safetensors");
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  EXPECT_EQ(file.names(), (std::vector<std::string>{"counts", "embed.weight", "empty", "half",
                                                    "ids", "norm.weight", "scalar"}));
  EXPECT_EQ(file.info("norm.weight").dtype_name, "BF16");
  EXPECT_EQ(file.info("scalar").shape, Shape{});
  EXPECT_EQ(file.info("empty").shape, (Shape{0, 3}));
  // Values against the generator's literals (f32/f16 values rounded as numpy rounds them).
  const Tensor embed = file.load("embed.weight");
  EXPECT_EQ(embed.dtype(), DType::F32);
  EXPECT_EQ(embed.to_vector(), (std::vector<double>{1.5, -2.25, static_cast<double>(0.1f), -0.0,
                                                    static_cast<double>(1e30f), 7.0}));
  EXPECT_TRUE(std::signbit(embed.to_vector()[3]));
  EXPECT_EQ(file.load("norm.weight").to_vector(), (std::vector<double>{1.0, -0.375, 300.0}));
  EXPECT_EQ(file.load("half").to_vector(),
            (std::vector<double>{0.5, -1.25, 65504.0, 6.103515625e-05}));
  EXPECT_EQ(file.load("scalar").item(), 3.141592653589793);
  EXPECT_EQ(file.load("ids").to_vector_i64(),
            (std::vector<int64_t>{0, -1, std::numeric_limits<int64_t>::max(),
                                  std::numeric_limits<int64_t>::min()}));
  EXPECT_EQ(file.load("counts").dtype(), DType::I32);
  EXPECT_EQ(file.load("counts").to_vector_i64(), (std::vector<int64_t>{7, -2147483648LL}));
  EXPECT_EQ(file.load("empty").numel(), 0);
  for (const auto& [name, t] : golden_tensors())
    expect_identical(file.load(name), t, name);
}

TEST(SafetensorsGolden, WriterProducesTheReferenceLibrarysBytes) {
  TempDir dir;
  const std::string path = dir.file("ours.safetensors");
  io::save_safetensors(path, golden_tensors(), {{"format", "pt"}});
  const std::string expected = read_bytes(kDataDir + "/golden.safetensors");
  ASSERT_EQ(expected.size(), 558u);
  EXPECT_EQ(read_bytes(path), expected);
}

// ---- corrupt files: one clear error each, naming the file ------------------------------

TEST(SafetensorsErrors, TruncatedFilesSayWhatSizeWasExpected) {
  TempDir dir;
  const std::string golden = read_bytes(kDataDir + "/golden.safetensors");
  const std::string cut = dir.file("cut.safetensors");
  write_bytes(cut, golden.substr(0, golden.size() - 10));
  EXPECT_ERROR_CONTAINS(SafetensorsFile{cut}, cut +
                                                  ": truncated safetensors file: expected 558 "
                                                  "bytes (8 + a 464-byte header + 86 bytes of "
                                                  "tensor data), found 548");
  write_bytes(cut, golden.substr(0, 100));
  EXPECT_ERROR_CONTAINS(SafetensorsFile{cut}, cut +
                                                  ": truncated safetensors file: expected at "
                                                  "least 472 bytes (8 + a 464-byte header), "
                                                  "found 100");
  write_bytes(cut, golden.substr(0, 5));
  EXPECT_ERROR_CONTAINS(SafetensorsFile{cut}, cut +
                                                  ": truncated safetensors file: 5 bytes, fewer "
                                                  "than the 8-byte header length");
  write_bytes(cut, golden + "xx");
  EXPECT_ERROR_CONTAINS(SafetensorsFile{cut}, cut + ": 2 unexpected bytes after the tensor data");
  EXPECT_ERROR_CONTAINS(SafetensorsFile{dir.file("missing.safetensors")},
                        "cannot open safetensors file '" + dir.file("missing.safetensors") + "'");
}

TEST(SafetensorsErrors, ABadHeaderLengthOrAHeaderThatIsNotJsonIsNamed) {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  const std::string ok_header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  write_bytes(path, raw_file(ok_header, "abcd", uint64_t{1} << 40));
  EXPECT_ERROR_CONTAINS(SafetensorsFile{path}, path + ": bad header length 1099511627776");
  write_bytes(path, raw_file("[1,2,3]", ""));
  EXPECT_ERROR_CONTAINS(SafetensorsFile{path}, path + ": the header does not start with '{'");
  // Corrupt JSON: the closing brace is missing.
  write_bytes(path, raw_file(ok_header.substr(0, ok_header.size() - 1) + " ", "abcd"));
  EXPECT_ERROR_CONTAINS(SafetensorsFile{path}, path + ": invalid JSON at line 1");
  write_bytes(path, raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],}})", "abcd"));
  EXPECT_ERROR_CONTAINS(SafetensorsFile{path},
                        path + ": invalid JSON at line 1, column 53: trailing");
}

TEST(SafetensorsErrors, WrongDataOffsetsAreReportedPerTensor) {
  TempDir dir;
  const std::string path = dir.file("offsets.safetensors");
  struct Case {
    std::string header;
    size_t data_bytes;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})", 8,
       "tensor 'a' (F32 [1]) needs 4 bytes, but its data_offsets [0, 8] span 8"},
      {R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,4]}})", 4,
       "tensor 'a' (F32 [2, 3]) needs 24 bytes"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
       12, "a gap of 4 bytes before tensor 'b'"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       8, "tensor 'b' (data_offsets [4, 8]) overlaps tensor 'a'"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8,
       "a gap of 4 bytes before tensor 'a'"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8,
       "tensor 'a' has data_offsets [8, 4] that end before they begin"},
      {R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8,
       "truncated safetensors file: expected 80 bytes"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4,
       "$.a.data_offsets: expected [begin, end], got [0]"},
      {R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4,
       "tensor 'a' has a negative size -1"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}})", 4,
       "$.a.data_offsets[1]: expected a non-negative integer, got the number -4"},
      {R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4,
       "impossibly large shape"},
      {R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4, "missing key $.a.shape"},
      {R"({"a":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}})", 4,
       "tensor 'a' has unknown dtype 'F31'"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
       R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       8, "duplicate key $.a"},
      {R"({"__metadata__":{"step":3},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4,
       "$.__metadata__.step: expected a string, got the number 3"},
  };
  for (const Case& c : cases) {
    std::string header = c.header;
    header.append((8 - header.size() % 8) % 8, ' ');
    write_bytes(path, raw_file(header, std::string(c.data_bytes, '\0')));
    const std::string message = error_of([&] { SafetensorsFile file(path); });
    EXPECT_NE(message.find(c.needle), std::string::npos)
        << "header: " << c.header << "\nexpected: " << c.needle << "\ngot: " << message;
    EXPECT_EQ(message.rfind(path, 0), 0u) << "the message should start with the file: " << message;
  }
}

TEST(SafetensorsErrors, KnownDtypesAutotpCannotLoadAreListedButFailOnLoad) {
  TempDir dir;
  const std::string path = dir.file("u8.safetensors");
  std::string header = R"({"mask":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},)"
                       R"("w":{"dtype":"F32","shape":[1],"data_offsets":[3,7]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  const float one = 1.0f;
  write_bytes(path, raw_file(header, std::string("\1\0\1", 3) +
                                         std::string(reinterpret_cast<const char*>(&one), 4)));
  const SafetensorsFile file(path);
  EXPECT_EQ(file.info("mask").dtype_name, "U8");
  EXPECT_FALSE(file.info("mask").dtype.has_value());
  EXPECT_EQ(file.load("w").item(), 1.0);  // unaligned offset 3: read through pread
  EXPECT_ERROR_CONTAINS(file.load("mask"), path +
                                               ": tensor 'mask' has dtype U8, which autotp "
                                               "cannot load");
  EXPECT_ERROR_CONTAINS(file.load_all(), "has dtype U8");
  EXPECT_ERROR_CONTAINS(file.load("nope"), path + ": no tensor named 'nope'");
}

TEST(SafetensorsReader, AcceptsHeaderEntriesInAnyOrderAsTheReferenceDoes) {
  TempDir dir;
  const std::string path = dir.file("order.safetensors");
  const float a = 2.0f, b = -3.0f;
  std::string header = R"({"b":{"dtype":"F32","shape":[],"data_offsets":[4,8]},)"
                       R"("a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"extra_ok":)"
                       R"({"dtype":"F64","shape":[0],"data_offsets":[8,8],"unknown_field":1}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  write_bytes(path, raw_file(header, std::string(reinterpret_cast<const char*>(&a), 4) +
                                         std::string(reinterpret_cast<const char*>(&b), 4)));
  const SafetensorsFile file(path);
  EXPECT_EQ(file.load("a").item(), 2.0);
  EXPECT_EQ(file.load("b").item(), -3.0);
  EXPECT_EQ(file.tensors().front().name, "a");  // listed in data order
}

TEST(SafetensorsWriter, RejectsDuplicateEmptyAndReservedNames) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  const Tensor t = Tensor::ones({2});
  EXPECT_ERROR_CONTAINS(io::save_safetensors(path, {{"a", t}, {"a", t}}),
                        path + ": tensor name 'a' appears twice");
  EXPECT_ERROR_CONTAINS(io::save_safetensors(path, {{"", t}}), "empty name");
  EXPECT_ERROR_CONTAINS(io::save_safetensors(path, {{"__metadata__", t}}), "reserved");
  EXPECT_ERROR_CONTAINS(io::save_safetensors(path, {{"u", Tensor()}}), "tensor 'u' is undefined");
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(dir.listing().empty());
}

// ---- atomic saves ----------------------------------------------------------------------

TEST(AtomicSave, SuccessReplacesTheFileAndLeavesNoTemporaryFileBehind) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  io::save_safetensors(path, {{"x", Tensor::ones({3})}});
  io::save_safetensors(path, {{"x", Tensor::full({3}, 2.0)}});
  EXPECT_EQ(dir.listing(), (std::set<std::string>{"model.safetensors"}));
  EXPECT_EQ(SafetensorsFile(path).load("x").to_vector(), (std::vector<double>{2, 2, 2}));
}

TEST(AtomicSave, AFailedSaveLeavesTheOldFileIntact) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  io::save_safetensors(path, {{"x", Tensor::ones({3})}});
  const std::string before = read_bytes(path);
  // A directory where the temporary file must go makes the save fail (even for root).
  fs::create_directory(io::atomic_temp_path(path));
  EXPECT_ERROR_CONTAINS(io::save_safetensors(path, {{"x", Tensor::full({3}, 2.0)}}),
                        "cannot write '" + path + "': cannot create the temporary file '" +
                            io::atomic_temp_path(path) + "'");
  EXPECT_EQ(read_bytes(path), before);
  fs::remove(io::atomic_temp_path(path));
  EXPECT_EQ(dir.listing(), (std::set<std::string>{"model.safetensors"}));
  EXPECT_ERROR_CONTAINS(
      io::save_safetensors(dir.file("no/such/dir/m.safetensors"), {{"x", Tensor::ones({1})}}),
      "cannot write '" + dir.file("no/such/dir/m.safetensors") + "'");
}

TEST(AtomicSave, AWriterAbandonedMidWriteRemovesItsTemporaryFile) {
  TempDir dir;
  const std::string path = dir.file("state.json");
  io::write_file_atomically(path, std::string_view("old contents"));
  EXPECT_THROW(io::write_file_atomically(path,
                                         [](io::AtomicFileWriter& out) {
                                           out.write(std::string_view("half of the new "));
                                           EXPECT_TRUE(fs::exists(out.temp_path()));
                                           AUTOTP_FAIL("simulated failure while writing");
                                         }),
               Error);
  EXPECT_EQ(read_bytes(path), "old contents");
  EXPECT_EQ(dir.listing(), (std::set<std::string>{"state.json"}));
}

// ---- sharded checkpoints ----------------------------------------------------------------

// Tensors named, typed and shaped as in tools/golden/make_safetensors_golden.py's sharding case.
NamedTensors sharding_golden_tensors() {
  auto iota = [](const Shape& shape, DType dtype, double start) {
    std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
    for (size_t i = 0; i < v.size(); ++i)
      v[i] = start + static_cast<double>(i);
    return Tensor::from_vector(v, shape, dtype);
  };
  return {
      {"model.embed_tokens.weight", iota({4, 8}, DType::F32, 0)},
      {"model.layers.0.self_attn.q_proj.weight", iota({4, 4}, DType::F32, 100)},
      {"model.layers.0.mlp.up_proj.weight", iota({4, 4}, DType::F16, 200)},
      {"model.layers.1.self_attn.q_proj.weight", iota({4, 4}, DType::F32, 300)},
      {"model.norm.weight", iota({4}, DType::F32, 400)},
      {"lm_head.weight", iota({2, 8}, DType::F32, 500)},
  };
}

TEST(ShardedCheckpoint, SplitsLikeTransformersAndWritesTheSameIndex) {
  TempDir dir;
  const NamedTensors tensors = sharding_golden_tensors();
  const std::vector<std::string> files = io::save_sharded(dir.path().string(), tensors, 100);
  EXPECT_EQ(files, (std::vector<std::string>{
                       "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                       "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"}));
  // The index, byte for byte, as transformers writes it for huggingface_hub's split.
  EXPECT_EQ(read_bytes(dir.file("model.safetensors.index.json")),
            read_bytes(kDataDir + "/sharded_index_golden.json"));
  const json::Value index = json::parse_file(dir.file("model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"].get<int64_t>("total_size"), 368);
  EXPECT_EQ(SafetensorsFile(dir.file(files[1])).names(),
            (std::vector<std::string>{"model.layers.0.mlp.up_proj.weight",
                                      "model.layers.0.self_attn.q_proj.weight"}));
  EXPECT_EQ(SafetensorsFile(dir.file(files[0])).metadata().at("format"), "pt");
  EXPECT_EQ(dir.listing().size(), 5u);
  EXPECT_FALSE(fs::exists(dir.file("model.safetensors")));

  const std::map<std::string, Tensor> loaded = io::load_sharded(dir.path().string());
  ASSERT_EQ(loaded.size(), tensors.size());
  for (const auto& [name, t] : tensors)
    expect_identical(loaded.at(name), t, name);

  const io::SafetensorsCheckpoint checkpoint(dir.path().string());
  EXPECT_EQ(checkpoint.files().size(), 4u);
  EXPECT_EQ(checkpoint.info("lm_head.weight").shape, (Shape{2, 8}));
  EXPECT_EQ(checkpoint.load("model.layers.0.mlp.up_proj.weight", DType::F32).dtype(), DType::F32);
  EXPECT_ERROR_CONTAINS(checkpoint.load("model.nope"), "has no tensor named 'model.nope'");
}

TEST(ShardedCheckpoint, OneShardIsASingleModelFileAndResavingRemovesStaleFiles) {
  TempDir dir;
  const std::string d = dir.path().string();
  const NamedTensors tensors = sharding_golden_tensors();
  write_bytes(dir.file("config.json"), "{}");
  io::save_sharded(d, tensors, 100);
  EXPECT_EQ(dir.listing().size(), 6u);
  // Everything fits now: one model.safetensors, and the shards and index of before are gone.
  EXPECT_EQ(io::save_sharded(d, tensors), (std::vector<std::string>{"model.safetensors"}));
  EXPECT_EQ(dir.listing(), (std::set<std::string>{"config.json", "model.safetensors"}));
  for (const auto& [name, t] : tensors)
    expect_identical(io::load_sharded(d).at(name), t, name);
  // And back to shards: model.safetensors must go, or it would shadow the index.
  io::save_sharded(d, tensors, 200);
  EXPECT_FALSE(fs::exists(dir.file("model.safetensors")));
  EXPECT_TRUE(fs::exists(dir.file("model.safetensors.index.json")));
  EXPECT_EQ(io::load_sharded(d).size(), tensors.size());
}

TEST(ShardedCheckpoint, AMissingShardFileIsNamed) {
  TempDir dir;
  const std::string d = dir.path().string();
  io::save_sharded(d, sharding_golden_tensors(), 100);
  fs::remove(dir.file("model-00003-of-00004.safetensors"));
  EXPECT_ERROR_CONTAINS(io::load_sharded(d),
                        "shard file 'model-00003-of-00004.safetensors' (holding "
                        "'model.layers.1.self_attn.q_proj.weight' and 1 more tensors) is missing");
  EXPECT_ERROR_CONTAINS(io::load_sharded(dir.file("empty_dir")), "holds no safetensors weights");
}

TEST(ShardedCheckpoint, ATensorListedTwiceOrMisplacedIsAnError) {
  TempDir dir;
  const std::string d = dir.path().string();
  const Tensor t = Tensor::ones({2});
  io::save_safetensors(dir.file("a.safetensors"), {{"x", t}, {"y", t}});
  io::save_safetensors(dir.file("b.safetensors"), {{"x", t}, {"z", t}});
  const std::string index = dir.file("model.safetensors.index.json");
  write_bytes(index, R"({"metadata": {}, "weight_map": {"x": "a.safetensors",
                        "y": "a.safetensors", "z": "b.safetensors"}})");
  EXPECT_ERROR_CONTAINS(io::load_sharded(d), "tensor 'x' is listed twice: '" +
                                                 dir.file("b.safetensors") + "' holds it, but " +
                                                 index + " places it in 'a.safetensors'");
  write_bytes(index, R"({"weight_map": {"x": "a.safetensors", "x": "b.safetensors"}})");
  EXPECT_ERROR_CONTAINS(io::load_sharded(d), index + ": duplicate key $.weight_map.x");
  write_bytes(index, R"({"weight_map": {"x": "a.safetensors", "y": "a.safetensors",
                        "w": "a.safetensors"}})");
  EXPECT_ERROR_CONTAINS(io::load_sharded(d), "places tensor 'w' in '" + dir.file("a.safetensors") +
                                                 "', which does not hold it");
  write_bytes(index, R"({"weight_map": {"x": "a.safetensors"}})");
  EXPECT_ERROR_CONTAINS(io::load_sharded(d), "holds tensor 'y', which " + index + " does not list");
  write_bytes(index, R"({"weight_map": {"x": "../a.safetensors"}})");
  EXPECT_ERROR_CONTAINS(io::load_sharded(d),
                        "$.weight_map.x: '../a.safetensors' is not a file "
                        "name in the checkpoint directory");
  write_bytes(index, R"({"metadata": {}})");
  EXPECT_ERROR_CONTAINS(io::load_sharded(d), index + ": missing key $.weight_map");
}

TEST(ShardedCheckpoint, SaveValidatesNamesAndLimitsBeforeWritingAnything) {
  TempDir dir;
  const std::string d = dir.file("out");
  const Tensor t = Tensor::ones({2});
  EXPECT_ERROR_CONTAINS(io::save_sharded(d, {{"a", t}, {"a", t}}, 4),
                        "tensor name 'a' appears "
                        "twice");
  EXPECT_ERROR_CONTAINS(io::save_sharded(d, {{"a", t}}, 0), "max_shard_bytes must be positive");
  EXPECT_FALSE(fs::exists(d));
}

}  // namespace
}  // namespace autotp
