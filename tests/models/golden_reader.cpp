// Golden file reader: manifest lines "<name> <dtype> <ndim> <dims...>" with the data
// concatenated in manifest order, and "key<TAB>value" config lines ("obj.key" for nested).
#include "tests/models/golden_reader.h"

#include <bit>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace autotp::testing {

namespace {
DType parse_dtype(const std::string& dir, const std::string& text) {
  if (text == "f32") return DType::F32;
  if (text == "f64") return DType::F64;
  if (text == "i64") return DType::I64;
  AUTOTP_FAIL("{}/tensors.txt: unknown dtype '{}'", dir, text);
}
}  // namespace

std::string golden_dir() {
  return std::string(AUTOTP_TEST_DATA_DIR) + "/golden";
}

const Tensor& GoldenModel::at(const std::string& key) const {
  auto it = tensors.find(key);
  if (it == tensors.end()) {
    std::string names;
    for (const auto& [n, t] : tensors)
      names += " " + n;
    AUTOTP_FAIL("golden model {} has no tensor '{}' (has:{})", name, key, names);
  }
  return it->second;
}

std::map<std::string, Tensor> GoldenModel::with_prefix(const std::string& prefix) const {
  std::map<std::string, Tensor> out;
  const std::string p = prefix + "/";
  for (const auto& [n, t] : tensors) {
    if (n.rfind(p, 0) == 0) out.emplace(n.substr(p.size()), t);
  }
  return out;
}

GoldenModel read_golden(const std::string& name) {
  static_assert(std::endian::native == std::endian::little, "golden files are little-endian");
  GoldenModel g;
  g.name = name;
  const std::string dir = golden_dir() + "/" + name;

  std::ifstream config(dir + "/config.txt");
  AUTOTP_CHECK(config.good(),
               "cannot open {}/config.txt (regenerate with "
               "tools/golden/make_llama_golden.py)",
               dir);
  std::string line;
  while (std::getline(config, line)) {
    const size_t tab = line.find('\t');
    AUTOTP_CHECK(tab != std::string::npos, "{}/config.txt: line without a tab: '{}'", dir, line);
    const std::string key = line.substr(0, tab), value = line.substr(tab + 1);
    const size_t dot = key.find('.');
    if (dot == std::string::npos) {
      g.config.scalars[key] = value;
    } else {
      g.config.objects[key.substr(0, dot)][key.substr(dot + 1)] = value;
    }
  }

  std::ifstream manifest(dir + "/tensors.txt");
  std::ifstream data(dir + "/tensors.bin", std::ios::binary);
  AUTOTP_CHECK(manifest.good() && data.good(), "cannot open {}/tensors.txt or tensors.bin", dir);
  while (std::getline(manifest, line)) {
    std::istringstream in(line);
    std::string tensor_name, dtype_text;
    int64_t ndim = -1;
    in >> tensor_name >> dtype_text >> ndim;
    AUTOTP_CHECK(!in.fail() && ndim >= 0, "{}/tensors.txt: bad line '{}'", dir, line);
    Shape shape(static_cast<size_t>(ndim));
    for (int64_t& d : shape)
      in >> d;
    AUTOTP_CHECK(!in.fail(), "{}/tensors.txt: bad shape in '{}'", dir, line);
    const DType dtype = parse_dtype(dir, dtype_text);
    Tensor t = Tensor::empty(shape, dtype);
    const auto bytes = static_cast<std::streamsize>(t.numel() * static_cast<int64_t>(t.itemsize()));
    data.read(static_cast<char*>(t.raw_data()), bytes);
    AUTOTP_CHECK(data.gcount() == bytes, "{}/tensors.bin ends inside tensor '{}'", dir,
                 tensor_name);
    g.tensors.emplace(tensor_name, t);
  }
  data.peek();
  AUTOTP_CHECK(data.eof(), "{}/tensors.bin has bytes beyond the tensors in tensors.txt", dir);
  return g;
}

}  // namespace autotp::testing
