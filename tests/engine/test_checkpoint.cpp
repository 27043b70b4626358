// Checkpoints: HF directories (config.json parsing, export -> reload bit-exact for every golden
// config, a directory transformers wrote, corrupt and mismatched files) and training checkpoints
// (round trip incl. the next AdamW step, interrupted saves, the `latest` pointer).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/io/json.h"
#include "core/io/safetensors.h"
#include "core/io/sharded_safetensors.h"
#include "engine/checkpoint.h"
#include "engine/hf_config.h"
#include "models/registry.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

namespace fs = std::filesystem;
using testing::Tolerance;

const std::vector<std::string>& golden_names() {
  static const std::vector<std::string> names = {"llama_gqa",  "llama_tied_bias", "llama3_rope",
                                                 "qwen2_bias", "qwen3_qknorm",    "mistral_window"};
  return names;
}

std::string data_dir() {
  return AUTOTP_TEST_DATA_DIR;
}
std::string golden_config_dir(const std::string& name) {
  return data_dir() + "/golden/" + name;
}
std::string hf_tiny_llama_dir() {
  return data_dir() + "/hf_tiny_llama";
}

// A fresh directory under the system temp dir, removed with everything in it at destruction.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() / ("autotp_test_checkpoint." + std::to_string(::getpid()) +
                                         "." + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::set<std::string> entries_of(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    out.insert(e.path().filename().string());
  return out;
}

// Elementwise identity (bit-exact for f32/f64 through double), shapes and dtypes equal; refuses
// an all-zero reference so the comparison cannot pass vacuously.
::testing::AssertionResult bit_equal(const Tensor& actual, const Tensor& expected) {
  if (actual.shape() != expected.shape() || actual.dtype() != expected.dtype()) {
    return ::testing::AssertionFailure()
           << "shape/dtype " << shape_str(actual.shape()) << " " << dtype_name(actual.dtype())
           << " vs " << shape_str(expected.shape()) << " " << dtype_name(expected.dtype());
  }
  const std::vector<double> a = actual.to_vector(), e = expected.to_vector();
  bool any_nonzero = false;
  for (size_t i = 0; i < e.size(); ++i) {
    if (!(a[i] == e[i])) {
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << e[i];
    }
    any_nonzero = any_nonzero || e[i] != 0.0;
  }
  if (!any_nonzero && !e.empty()) return ::testing::AssertionFailure() << "all-zero reference";
  return ::testing::AssertionSuccess();
}

// Fixed input ids [2, 5] below `vocab`.
Tensor sample_ids(int64_t vocab) {
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 10; ++i)
    ids.push_back((7 * i + 3) % vocab);
  return Tensor::from_vector_i64(ids, {2, 5});
}

// Every parameter of `model` uniform in [-0.3, 0.3) (norm weights in [0.7, 1.3)), drawn per
// name from `seed`: unlike HF's initialization, no bias is zero and no norm weight is one, and
// the logits are far from uniform.
void randomize(const CausalLM& model, uint64_t seed) {
  NoGradGuard no_grad;
  uint64_t k = 0;
  for (const auto& [name, t] : model.named_parameters()) {
    const bool norm = name.find("norm") != std::string::npos;
    t.copy_(testing::random_tensor(t.shape(), seed * 1000 + k++, t.dtype(), norm ? 0.7 : -0.3,
                                   norm ? 1.3 : 0.3));
  }
}

// A randomized model (see randomize) for the golden config `name`.
std::shared_ptr<CausalLM> random_model(const std::string& name, uint64_t seed) {
  const std::shared_ptr<CausalLM> model =
      create_model(load_hf_config(golden_config_dir(name)), seed);
  randomize(*model, seed);
  return model;
}

// ---- config.json -----------------------------------------------------------------------

TEST(LoadHfConfig, ReadsTransformersConfigJsonWithNestedRopeParameters) {
  const ModelConfig c = load_hf_config(golden_config_dir("llama3_rope"));
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.vocab_size, 61);
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.intermediate_size, 44);
  EXPECT_EQ(c.num_attention_heads, 2);
  EXPECT_EQ(c.num_key_value_heads, 1);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_theta, 500000.0);  // from rope_parameters
  EXPECT_EQ(c.rope_scaling.rope_type, "llama3");
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 512);
  EXPECT_EQ(c.max_position_embeddings, 4096);
}

TEST(LoadHfConfig, AcceptsThePathOfTheConfigFileItself) {
  EXPECT_EQ(load_hf_config(golden_config_dir("qwen2_bias") + "/config.json"),
            load_hf_config(golden_config_dir("qwen2_bias")));
}

TEST(LoadHfConfig, UnknownKeyIsAnErrorNamingTheFileAndTheClosestKey) {
  TempDir tmp;
  std::string text = read_text(golden_config_dir("llama_gqa") + "/config.json");
  const size_t pos = text.find("\"rms_norm_eps\"");
  ASSERT_NE(pos, std::string::npos);
  text.replace(pos, 14, "\"rms_norm_epsilon\"");
  write_text(tmp / "config.json", text);
  EXPECT_ERROR_CONTAINS(load_hf_config(tmp.path().string()), tmp / "config.json");
  EXPECT_ERROR_CONTAINS(load_hf_config(tmp.path().string()), "'rms_norm_epsilon'");
  EXPECT_ERROR_CONTAINS(load_hf_config(tmp.path().string()), "did you mean 'rms_norm_eps'");
}

TEST(LoadHfConfig, WrongValueTypeAndMissingFileAreErrorsNamingTheFile) {
  TempDir tmp;
  std::string text = read_text(golden_config_dir("llama_gqa") + "/config.json");
  const size_t pos = text.find("\"hidden_size\": 32");
  ASSERT_NE(pos, std::string::npos);
  text.replace(pos, 17, "\"hidden_size\": \"wide\"");
  write_text(tmp / "config.json", text);
  EXPECT_ERROR_CONTAINS(load_hf_config(tmp.path().string()), tmp / "config.json");
  EXPECT_ERROR_CONTAINS(load_hf_config(tmp.path().string()), "'hidden_size' must be an integer");
  EXPECT_ERROR_CONTAINS(load_hf_config(tmp / "nowhere"),
                        "'" + (tmp / "nowhere") + "' does not exist");
  fs::create_directories(tmp / "empty");
  EXPECT_ERROR_CONTAINS(load_hf_config(tmp / "empty"), "it has no config.json");
}

// ---- export -> reload --------------------------------------------------------------------

class ExportReload : public ::testing::TestWithParam<std::string> {};

TEST_P(ExportReload, GivesBitIdenticalWeightsAndLogitsAndTheSameConfig) {
  const std::shared_ptr<CausalLM> model = random_model(GetParam(), /*seed=*/11);
  const ModelConfig& config = model->config();
  TempDir tmp;
  const std::string dir = tmp / "export";
  export_hf_model(*model, dir);

  // The files transformers expects, and nothing left beside the directory.
  EXPECT_EQ(entries_of(dir), (std::set<std::string>{"config.json", "model.safetensors"}));
  EXPECT_EQ(entries_of(tmp.path()), std::set<std::string>{"export"});
  const json::Value written = json::parse_file(dir + "/config.json");
  EXPECT_EQ(written.get<std::string>("model_type"), config.model_type);
  ASSERT_EQ(written["architectures"].size(), 1u);
  EXPECT_EQ(written["architectures"][0].as_string(), config.architecture());
  EXPECT_EQ(written.get<std::string>("dtype"), "float32");
  EXPECT_EQ(written.get<std::string>("torch_dtype"), "float32");
  EXPECT_EQ(written.get<bool>("tie_word_embeddings"), config.tie_word_embeddings);
  EXPECT_EQ(written["rms_norm_eps"].number_text().find('.') != std::string::npos ||
                written["rms_norm_eps"].number_text().find('e') != std::string::npos,
            true)
      << "floats are written as floats";
  EXPECT_EQ(written["rope_theta"].number_text().find('.') != std::string::npos, true);
  // Tied models omit lm_head.weight, as transformers' save_pretrained does.
  const io::SafetensorsCheckpoint files(dir);
  EXPECT_EQ(files.contains("lm_head.weight"), !config.tie_word_embeddings);

  const std::shared_ptr<CausalLM> reloaded = load_hf_model(dir);
  EXPECT_EQ(reloaded->config(), config);
  const StateDict want = model->state_dict(), got = reloaded->state_dict();
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, t] : want)
    EXPECT_TRUE(bit_equal(got.at(name), t)) << name;
  const Tensor ids = sample_ids(config.vocab_size);
  EXPECT_TRUE(bit_equal(reloaded->forward(ids), model->forward(ids)));
}

INSTANTIATE_TEST_SUITE_P(GoldenConfigs, ExportReload, ::testing::ValuesIn(golden_names()));

TEST(ExportHfModel, ShardsAboveMaxShardBytesAndReloadsFromTheIndex) {
  const ModelConfig config = load_hf_config(golden_config_dir("llama_gqa"));
  const std::shared_ptr<CausalLM> model = create_model(config, /*seed=*/5);
  TempDir tmp;
  const std::string dir = tmp / "sharded";
  export_hf_model(*model, dir, std::nullopt, /*max_shard_bytes=*/40000);
  const std::set<std::string> files = entries_of(dir);
  EXPECT_EQ(files.count("model.safetensors"), 0u);
  EXPECT_EQ(files.count("model.safetensors.index.json"), 1u);
  EXPECT_GE(files.size(), 4u) << "config, index and at least two shards";
  const std::shared_ptr<CausalLM> reloaded = load_hf_model(dir);
  const Tensor ids = sample_ids(config.vocab_size);
  EXPECT_TRUE(bit_equal(reloaded->forward(ids), model->forward(ids)));
}

TEST(ExportHfModel, Bf16ExportStoresBf16AndReloadsAsTheRoundedWeights) {
  const std::shared_ptr<CausalLM> model = random_model("qwen3_qknorm", /*seed=*/6);
  TempDir tmp;
  const std::string dir = tmp / "bf16";
  export_hf_model(*model, dir, DType::BF16);
  EXPECT_EQ(json::parse_file(dir + "/config.json").get<std::string>("dtype"), "bfloat16");
  const io::SafetensorsFile file(dir + "/model.safetensors");
  for (const auto& info : file.tensors())
    EXPECT_EQ(info.dtype_name, "BF16") << info.name;
  // Loaded as f32: each weight is the f32 weight rounded to bf16 (exact in f32).
  const std::shared_ptr<CausalLM> reloaded = load_hf_model(dir, DType::F32);
  for (const auto& [name, t] : model->state_dict()) {
    EXPECT_TRUE(bit_equal(reloaded->state_dict().at(name), t.to(DType::BF16).to(DType::F32)))
        << name;
  }
  // Loaded as bf16: the stored values themselves.
  const std::shared_ptr<CausalLM> as_bf16 = load_hf_model(dir, DType::BF16);
  for (const auto& [name, t] : as_bf16->state_dict()) {
    EXPECT_TRUE(bit_equal(t, file.load(name))) << name;
  }
}

TEST(ExportHfModel, ReplacesAnEarlierExportCompletely) {
  const ModelConfig config = load_hf_config(golden_config_dir("mistral_window"));
  TempDir tmp;
  const std::string dir = tmp / "model";
  export_hf_model(*create_model(config, 1), dir, std::nullopt, /*max_shard_bytes=*/40000);
  ASSERT_TRUE(fs::exists(dir + "/model.safetensors.index.json"));
  const std::shared_ptr<CausalLM> second = create_model(config, 2);
  export_hf_model(*second, dir + "/");  // a trailing separator names the same directory
  // Only the new export's files: no stale shards or index, no temporary or old siblings.
  EXPECT_EQ(entries_of(dir), (std::set<std::string>{"config.json", "model.safetensors"}));
  EXPECT_EQ(entries_of(tmp.path()), std::set<std::string>{"model"});
  const Tensor ids = sample_ids(config.vocab_size);
  EXPECT_TRUE(bit_equal(load_hf_model(dir)->forward(ids), second->forward(ids)));
}

TEST(ExportHfModel, RefusesToReplaceADirectoryThatIsNotAModel) {
  TempDir tmp;
  fs::create_directories(tmp / "notes");
  write_text(tmp / "notes/todo.txt", "keep me");
  const ModelConfig config = load_hf_config(golden_config_dir("llama_gqa"));
  EXPECT_ERROR_CONTAINS(export_hf_model(*create_model(config, 1), tmp / "notes"),
                        "'" + (tmp / "notes") + "' holds what an export does not write (todo.txt)");
  EXPECT_EQ(read_text(tmp / "notes/todo.txt"), "keep me");
  write_text(tmp / "a_file", "keep me");
  EXPECT_ERROR_CONTAINS(export_hf_model(*create_model(config, 1), tmp / "a_file"),
                        "exists and is not a directory");
  EXPECT_EQ(read_text(tmp / "a_file"), "keep me");
}

// A model directory with files beside the weights (a tokenizer, a training checkpoint's
// optimizer state and manifest) is not replaced: those files would be lost with it.
TEST(ExportHfModel, RefusesToReplaceAModelDirectoryHoldingOtherFiles) {
  const ModelConfig config = load_hf_config(golden_config_dir("llama_gqa"));
  TempDir tmp;
  const std::string dir = tmp / "model";
  export_hf_model(*create_model(config, 1), dir);
  write_text(dir + "/tokenizer.json", "{}");
  write_text(dir + "/state.json", "{}");
  EXPECT_ERROR_CONTAINS(export_hf_model(*create_model(config, 2), dir),
                        "holds what an export does not write (state.json, tokenizer.json)");
  EXPECT_EQ(entries_of(dir), (std::set<std::string>{"config.json", "model.safetensors",
                                                    "state.json", "tokenizer.json"}));
}

// ---- a checkpoint directory written by transformers --------------------------------------

// reference_logits.txt (tools/golden/make_hf_checkpoint_golden.py): '#' comments, then
// "<name> <ndim> <dims...>" followed by the values, for input_ids and logits.
std::map<std::string, Tensor> read_reference_logits(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::string line, tokens_text;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] != '#') tokens_text += line + "\n";
  }
  std::istringstream tokens(tokens_text);
  std::map<std::string, Tensor> out;
  std::string name;
  while (tokens >> name) {
    int64_t ndim = 0;
    tokens >> ndim;
    Shape shape(static_cast<size_t>(ndim));
    for (int64_t& d : shape)
      tokens >> d;
    if (name == "input_ids") {
      std::vector<int64_t> ids(static_cast<size_t>(shape_numel(shape)));
      for (int64_t& v : ids)
        tokens >> v;
      out[name] = Tensor::from_vector_i64(ids, shape);
    } else {
      std::vector<double> values(static_cast<size_t>(shape_numel(shape)));
      for (double& v : values)
        tokens >> v;
      out[name] = Tensor::from_vector(values, shape, DType::F64);
    }
    EXPECT_FALSE(tokens.fail()) << path << ": malformed entry " << name;
  }
  return out;
}

void write_reference_logits(const std::string& path, const Tensor& ids, const Tensor& logits) {
  std::ofstream out(path);
  out << "# autotp's float32 logits of this directory's model\n";
  out << "input_ids " << ids.dim();
  for (int64_t d : ids.shape())
    out << ' ' << d;
  out << '\n';
  for (int64_t v : ids.to_vector_i64())
    out << v << ' ';
  out << "\nlogits " << logits.dim();
  for (int64_t d : logits.shape())
    out << ' ' << d;
  out << '\n';
  char buf[32];
  for (double v : logits.to_vector()) {
    std::snprintf(buf, sizeof buf, "%.9g ", v);  // round-trips f32
    out << buf;
  }
  out << '\n';
}

// Terms along the longest chain of rounded f32 accumulations behind one logit of a Llama
// without q/k norms (the same count as tests/models/test_llama_golden.cpp): per layer the
// input RMSNorm (hidden), q/k/v (hidden), q.k (head_dim), softmax sum and P.V (seq each),
// o_proj (heads * head_dim), post-attention RMSNorm (hidden), gate/up (hidden), down
// (intermediate); then the final norm and lm_head (hidden each).
int64_t accumulation_depth(const ModelConfig& c, int64_t seq) {
  const int64_t per_layer = 2 * c.hidden_size + c.head_dim + 2 * seq +
                            c.num_attention_heads * c.head_dim + 2 * c.hidden_size +
                            c.intermediate_size;
  return c.num_hidden_layers * per_layer + 2 * c.hidden_size;
}

// Both sides round a chain of K terms in unit roundoff u, so each is within about K*u*(sum of
// |terms|) of the exact logits, bounded here by K*u*(max|logit| + |logit|); `sides` = 2 when
// both are f32 computations, 1 when ours is f64 (error ~1e-16, negligible).
Tolerance logits_tolerance(const Tensor& expected, int64_t depth, int sides) {
  double max_abs = 0.0;
  for (double v : expected.to_vector())
    max_abs = std::max(max_abs, std::fabs(v));
  const double u = std::numeric_limits<float>::epsilon() / 2;
  const double bound = sides * static_cast<double>(depth) * u;
  return {bound * max_abs, bound};
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double d = 0.0;
  for (size_t i = 0; i < x.size(); ++i)
    d = std::max(d, std::fabs(x[i] - y[i]));
  return d;
}

TEST(LoadHfModel, ReproducesTheLogitsTransformersComputedForItsOwnSavedCheckpoint) {
  const std::map<std::string, Tensor> ref =
      read_reference_logits(hf_tiny_llama_dir() + "/reference_logits.txt");
  ASSERT_EQ(ref.count("input_ids"), 1u);
  ASSERT_EQ(ref.count("logits"), 1u);
  const Tensor& ids = ref.at("input_ids");  // [2, 7]
  const Tensor& want = ref.at("logits");    // [2, 7, 67], f32 values from transformers
  for (DType dtype : {DType::F32, DType::F64}) {
    const std::shared_ptr<CausalLM> model = load_hf_model(hf_tiny_llama_dir(), dtype);
    EXPECT_EQ(model->config().vocab_size, 67);
    EXPECT_EQ(model->config().rope_theta, 5000.0);
    const Tensor logits = model->forward(ids).to(DType::F64);
    const int64_t depth = accumulation_depth(model->config(), ids.size(1));
    const Tolerance tol = logits_tolerance(want, depth, dtype == DType::F32 ? 2 : 1);
    EXPECT_ALL_CLOSE(logits, want, tol);
    std::printf(
        "[ hf_tiny_llama %s ] max|ours - transformers| = %.3g (tolerance %.3g + %.3g*|x|)\n",
        std::string(dtype_name(dtype)).c_str(), max_abs_diff(logits, want), tol.atol, tol.rtol);
  }
}

TEST(LoadHfModel, LoadsEveryTensorOfTheCheckpointUnchanged) {
  const std::shared_ptr<CausalLM> model = load_hf_model(hf_tiny_llama_dir());
  const std::map<std::string, Tensor> file =
      io::load_safetensors(hf_tiny_llama_dir() + "/model.safetensors");
  const StateDict state = model->state_dict();
  ASSERT_EQ(state.size(), file.size());
  for (const auto& [name, t] : file)
    EXPECT_TRUE(bit_equal(state.at(name), t)) << name;
}

// Copies the transformers-written checkpoint into `dir` for a test to damage.
void copy_tiny_llama(const std::string& dir) {
  fs::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors"}) {
    fs::copy_file(hf_tiny_llama_dir() + "/" + f, dir + "/" + f);
  }
}

TEST(LoadHfModel, TruncatedSafetensorsIsOneErrorNamingTheFile) {
  TempDir tmp;
  const std::string dir = tmp / "m";
  copy_tiny_llama(dir);
  const std::string file = dir + "/model.safetensors";
  fs::resize_file(file, fs::file_size(file) - 100);
  EXPECT_ERROR_CONTAINS(load_hf_model(dir), file);
  EXPECT_ERROR_CONTAINS(load_hf_model(dir), "truncated");
}

TEST(LoadHfModel, CorruptSafetensorsHeaderIsAnErrorNamingTheFile) {
  TempDir tmp;
  const std::string dir = tmp / "m";
  copy_tiny_llama(dir);
  const std::string file = dir + "/model.safetensors";
  std::string bytes = read_text(file);
  bytes.replace(8, 12, "{\"oops\": [1,");  // the JSON header no longer parses
  write_text(file, bytes);
  EXPECT_ERROR_CONTAINS(load_hf_model(dir), file);
  // A header length beyond the file.
  bytes = read_text(hf_tiny_llama_dir() + "/model.safetensors");
  bytes[5] = '\x7f';
  write_text(file, bytes);
  EXPECT_ERROR_CONTAINS(load_hf_model(dir), file);
}

TEST(LoadHfModel, MissingUnexpectedAndMisshapenTensorsAreReportedTogetherNamingTheDirectory) {
  TempDir tmp;
  const std::string dir = tmp / "m";
  copy_tiny_llama(dir);
  std::map<std::string, Tensor> tensors = io::load_safetensors(dir + "/model.safetensors");
  tensors.erase("model.norm.weight");
  tensors.erase("model.layers.1.mlp.up_proj.weight");
  tensors["model.layers.2.mlp.up_proj.weight"] = Tensor::zeros({48, 32});
  tensors["model.layers.0.self_attn.k_proj.weight"] = Tensor::zeros({17, 32});
  io::save_safetensors(dir + "/model.safetensors", {tensors.begin(), tensors.end()});
  const std::string msg = testing::error_message([&] { load_hf_model(dir); });
  EXPECT_NE(msg.find(dir), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing tensors (2): model.layers.1.mlp.up_proj.weight, model.norm.weight"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("unexpected tensors (1): model.layers.2.mlp.up_proj.weight"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("'model.layers.0.self_attn.k_proj.weight' has shape [17, 32] in the "
                     "checkpoint, the model needs [16, 32]"),
            std::string::npos)
      << msg;
}

TEST(LoadHfModel, TiedModelIgnoresARedundantLmHeadLikeTransformers) {
  const ModelConfig config = load_hf_config(golden_config_dir("llama_tied_bias"));
  const std::shared_ptr<CausalLM> model = create_model(config, 3);
  TempDir tmp;
  const std::string dir = tmp / "tied";
  export_hf_model(*model, dir);
  std::map<std::string, Tensor> tensors = io::load_safetensors(dir + "/model.safetensors");
  tensors["lm_head.weight"] = tensors.at("model.embed_tokens.weight").clone();
  io::save_safetensors(dir + "/model.safetensors", {tensors.begin(), tensors.end()});
  const Tensor ids = sample_ids(config.vocab_size);
  EXPECT_TRUE(bit_equal(load_hf_model(dir)->forward(ids), model->forward(ids)));
  // A misshapen one is still an error.
  tensors["lm_head.weight"] = Tensor::zeros({3, 3});
  io::save_safetensors(dir + "/model.safetensors", {tensors.begin(), tensors.end()});
  EXPECT_ERROR_CONTAINS(load_hf_model(dir), "unexpected tensors (1): lm_head.weight");
}

// Not a check by itself: with AUTOTP_EXPORT_CHECK_DIR set, exports one model per golden config
// there with autotp's logits, for `tools/golden/make_hf_checkpoint_golden.py --check-export
// DIR/<name>` to load with transformers and compare.
TEST(ExportHfModel, WritesExportsForTheTransformersCheckWhenAsked) {
  const char* out = std::getenv("AUTOTP_EXPORT_CHECK_DIR");
  if (out == nullptr) GTEST_SKIP() << "set AUTOTP_EXPORT_CHECK_DIR to write the exports";
  for (const std::string& name : golden_names()) {
    const std::shared_ptr<CausalLM> model = random_model(name, /*seed=*/21);
    const ModelConfig& config = model->config();
    const std::string dir = std::string(out) + "/" + name;
    export_hf_model(*model, dir);
    const Tensor ids = sample_ids(config.vocab_size);
    write_reference_logits(dir + "/reference_logits.txt", ids, model->forward(ids));
  }
  // The hf_tiny_llama checkpoint, reloaded and exported again in bf16.
  const std::string dir = std::string(out) + "/hf_tiny_llama_bf16";
  export_hf_model(*load_hf_model(hf_tiny_llama_dir()), dir, DType::BF16);
  const std::shared_ptr<CausalLM> bf16 = load_hf_model(dir, DType::F32);
  const Tensor ids = sample_ids(67);
  write_reference_logits(dir + "/reference_logits.txt", ids, bf16->forward(ids));
  // A sharded export, and a training checkpoint directory (also an HF directory).
  const std::shared_ptr<CausalLM> model = random_model("qwen2_bias", /*seed=*/22);
  const Tensor qwen_ids = sample_ids(model->config().vocab_size);
  const std::string sharded = std::string(out) + "/qwen2_bias_sharded";
  export_hf_model(*model, sharded, std::nullopt, /*max_shard_bytes=*/40000);
  write_reference_logits(sharded + "/reference_logits.txt", qwen_ids, model->forward(qwen_ids));
  const AdamW optimizer(model->named_parameters(), AdamWOptions{});
  const std::string step_dir =
      save_training_checkpoint(std::string(out) + "/train", *model, optimizer, TrainingState{});
  write_reference_logits(step_dir + "/reference_logits.txt", qwen_ids, model->forward(qwen_ids));
}

// ---- training checkpoints -----------------------------------------------------------------

struct Trainee {
  std::shared_ptr<CausalLM> model;
  std::unique_ptr<AdamW> optimizer;
};

Trainee make_trainee(uint64_t seed) {
  const ModelConfig config = load_hf_config(golden_config_dir("llama_gqa"));
  Trainee t;
  t.model = create_model(config, seed);
  AdamWOptions options;
  options.lr = 1e-2;
  options.weight_decay = 0.1;
  t.optimizer = std::make_unique<AdamW>(t.model->named_parameters(), options);
  return t;
}

// One optimizer step on the loss of batch `batch` (deterministic ids).
void train_step(Trainee& t, int batch) {
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 12; ++i)
    ids.push_back((5 * i + 7 * batch + 1) % t.model->config().vocab_size);
  const Tensor x = Tensor::from_vector_i64(ids, {2, 6});
  t.optimizer->zero_grad();
  t.model->forward_loss(x, x).backward();
  t.optimizer->step();
}

TrainingState state_at(int64_t step) {
  TrainingState s;
  s.step = step;
  s.seed = 18446744073709551557ull;  // above INT64_MAX: must survive JSON exactly
  s.tokens_seen = step * 12;
  s.config_yaml = "model:\n  path: \"x\"\ntrain:\n  steps: 10  # \\ and unicode \xc3\xa9\n";
  return s;
}

void expect_same_training_state(const Trainee& a, const Trainee& b) {
  const StateDict ma = a.model->state_dict(), mb = b.model->state_dict();
  ASSERT_EQ(ma.size(), mb.size());
  for (const auto& [name, t] : ma)
    EXPECT_TRUE(bit_equal(mb.at(name), t)) << name;
  const NamedTensors oa = a.optimizer->state_dict(), ob = b.optimizer->state_dict();
  ASSERT_EQ(oa.size(), ob.size());
  for (size_t i = 0; i < oa.size(); ++i) {
    EXPECT_EQ(oa[i].first, ob[i].first);
    EXPECT_TRUE(bit_equal(ob[i].second, oa[i].second)) << oa[i].first;
  }
}

TEST(TrainingCheckpoint, RoundTripRestoresWeightsOptimizerStateAndTheNextStepBitExactly) {
  Trainee original = make_trainee(1);
  train_step(original, 0);
  train_step(original, 1);
  TempDir out;
  const std::string dir = save_training_checkpoint(out.path().string(), *original.model,
                                                   *original.optimizer, state_at(2));
  EXPECT_EQ(dir, out / "checkpoints/step-00000002");
  EXPECT_EQ(entries_of(dir), (std::set<std::string>{"config.json", "model.safetensors",
                                                    "optimizer.safetensors", "state.json"}));
  // The optimizer's 0-dim i64 step counters are stored as such.
  const io::SafetensorsFile opt_file(dir + "/optimizer.safetensors");
  const io::SafetensorsTensorInfo& step_info = opt_file.info("model.norm.weight.step");
  EXPECT_EQ(step_info.dtype_name, "I64");
  EXPECT_TRUE(step_info.shape.empty());
  EXPECT_EQ(opt_file.load("model.norm.weight.step").to_vector_i64(), std::vector<int64_t>{2});

  Trainee resumed = make_trainee(99);  // different weights, fresh optimizer
  const TrainingState state = load_training_checkpoint(dir, *resumed.model, *resumed.optimizer);
  const TrainingState want = state_at(2);
  EXPECT_EQ(state.step, want.step);
  EXPECT_EQ(state.seed, want.seed);
  EXPECT_EQ(state.tokens_seen, want.tokens_seen);
  EXPECT_EQ(state.config_yaml, want.config_yaml);
  expect_same_training_state(original, resumed);

  train_step(original, 2);
  train_step(resumed, 2);
  expect_same_training_state(original, resumed);
}

TEST(TrainingCheckpoint, StepZeroWithAnEmptyOptimizerStateRoundTrips) {
  Trainee original = make_trainee(1);
  TempDir out;
  const std::string dir = save_training_checkpoint(out.path().string(), *original.model,
                                                   *original.optimizer, state_at(0));
  EXPECT_EQ(dir, out / "checkpoints/step-00000000");
  Trainee resumed = make_trainee(2);
  EXPECT_EQ(load_training_checkpoint(dir, *resumed.model, *resumed.optimizer).step, 0);
  expect_same_training_state(original, resumed);
  train_step(original, 0);
  train_step(resumed, 0);
  expect_same_training_state(original, resumed);
}

TEST(TrainingCheckpoint, ACheckpointDirectoryIsAlsoAHfModelDirectory) {
  Trainee t = make_trainee(4);
  train_step(t, 0);
  TempDir out;
  const std::string dir =
      save_training_checkpoint(out.path().string(), *t.model, *t.optimizer, state_at(1));
  const Tensor ids = sample_ids(t.model->config().vocab_size);
  EXPECT_TRUE(bit_equal(load_hf_model(dir)->forward(ids), t.model->forward(ids)));
}

TEST(TrainingCheckpoint, LatestPointsAtTheNewestSaveAndIsReplacedWithoutLeftovers) {
  Trainee t = make_trainee(1);
  TempDir out;
  EXPECT_EQ(latest_training_checkpoint(out.path().string()), std::nullopt);
  save_training_checkpoint(out.path().string(), *t.model, *t.optimizer, state_at(0));
  train_step(t, 0);
  save_training_checkpoint(out.path().string(), *t.model, *t.optimizer, state_at(1));
  train_step(t, 1);
  const std::string second =
      save_training_checkpoint(out.path().string(), *t.model, *t.optimizer, state_at(2));
  EXPECT_EQ(latest_training_checkpoint(out.path().string()), second);
  EXPECT_EQ(read_text(out / "checkpoints/latest"), "step-00000002\n");
  // Earlier checkpoints are kept; no temporary files or directories remain.
  EXPECT_EQ(entries_of(out / "checkpoints"),
            (std::set<std::string>{"latest", "step-00000000", "step-00000001", "step-00000002"}));
  // Saving the same step again replaces that checkpoint as a whole.
  train_step(t, 2);
  save_training_checkpoint(out.path().string(), *t.model, *t.optimizer, state_at(2));
  Trainee resumed = make_trainee(7);
  load_training_checkpoint(second, *resumed.model, *resumed.optimizer);
  expect_same_training_state(t, resumed);
  EXPECT_EQ(entries_of(out / "checkpoints").size(), 4u);
}

TEST(TrainingCheckpoint, AnInterruptedSaveIsIgnoredAndThePreviousCheckpointStaysLoadable) {
  Trainee t = make_trainee(1);
  train_step(t, 0);
  TempDir out;
  const std::string root = out / "checkpoints";
  save_training_checkpoint(out.path().string(), *t.model, *t.optimizer, state_at(1));
  const std::string good =
      save_training_checkpoint(out.path().string(), *t.model, *t.optimizer, state_at(2));
  // A crash while saving step 3: a half-written temporary directory, and (as if the rename
  // had happened without state.json) a step directory with weights but no state.json.
  fs::create_directories(root + "/.step-00000003.tmp.12345");
  write_text(root + "/.step-00000003.tmp.12345/model.safetensors", "partial");
  fs::create_directories(root + "/step-00000003");
  fs::copy_file(good + "/model.safetensors", root + "/step-00000003/model.safetensors");
  EXPECT_EQ(latest_training_checkpoint(out.path().string()), good);
  // Without `latest`, or with it naming the incomplete directory, the newest complete one.
  fs::remove(root + "/latest");
  EXPECT_EQ(latest_training_checkpoint(out.path().string()), good);
  write_text(root + "/latest", "step-00000003\n");
  EXPECT_EQ(latest_training_checkpoint(out.path().string()), good);
  // A torn state.json does not count as complete either.
  write_text(root + "/step-00000003/state.json", "{\"format\": \"autotp-train");
  EXPECT_EQ(latest_training_checkpoint(out.path().string()), good);
  Trainee resumed = make_trainee(8);
  EXPECT_EQ(load_training_checkpoint(good, *resumed.model, *resumed.optimizer).step, 2);
  expect_same_training_state(t, resumed);
  EXPECT_ERROR_CONTAINS(
      load_training_checkpoint(root + "/step-00000003", *resumed.model, *resumed.optimizer),
      root + "/step-00000003/state.json");
}

TEST(TrainingCheckpoint, MismatchedOrCorruptFilesAreErrorsNamingThem) {
  Trainee t = make_trainee(1);
  train_step(t, 0);
  TempDir out;
  const std::string dir =
      save_training_checkpoint(out.path().string(), *t.model, *t.optimizer, state_at(1));
  // A model of another shape: names the directory and the mismatch.
  const ModelConfig other = load_hf_config(golden_config_dir("llama_tied_bias"));
  const std::shared_ptr<CausalLM> wrong = create_model(other, 1);
  AdamW wrong_opt(wrong->named_parameters(), AdamWOptions{});
  EXPECT_ERROR_CONTAINS(load_training_checkpoint(dir, *wrong, wrong_opt), dir);
  EXPECT_ERROR_CONTAINS(load_training_checkpoint(dir, *wrong, wrong_opt), "missing tensors");
  // A truncated optimizer file.
  const std::string opt_file = dir + "/optimizer.safetensors";
  fs::resize_file(opt_file, fs::file_size(opt_file) - 8);
  Trainee fresh = make_trainee(2);
  EXPECT_ERROR_CONTAINS(load_training_checkpoint(dir, *fresh.model, *fresh.optimizer), opt_file);
}

}  // namespace
}  // namespace autotp
