// Token sources (synthetic bigram stream, mapped token files, byte-level text) and the
// stateless micro-batch loader.
#include "engine/data.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <utility>
#include <variant>
#include <vector>

#include "core/error.h"
#include "engine/embedded_corpus.h"
#include "engine/mapped_file.h"
#include "kernels/philox.h"

namespace autotp {

namespace {

// A uniform integer in [0, n) from two Philox words (bias below n / 2^64: negligible).
uint64_t uniform_index(const philox::Block& b, int word, uint64_t n) {
  const uint64_t bits = (static_cast<uint64_t>(b.v[word]) << 32) | b.v[word + 1];
  return bits % n;
}

// Counter ranges: the synthetic permutation draws from counters at kTableCounterBase + k; sample
// i of length L draws from counters i*L .. i*L + L - 1 (window starts use counter i).
constexpr uint64_t kTableCounterBase = uint64_t{1} << 63;
constexpr double kSyntheticNoise = 0.1;

class SyntheticSource final : public TokenSource {
 public:
  SyntheticSource(uint64_t seed, int64_t vocab_size) : seed_(seed), vocab_(vocab_size) {
    AUTOTP_CHECK(vocab_size >= 2, "data: synthetic data needs vocab_size >= 2, got {}", vocab_size);
    next_.resize(static_cast<size_t>(vocab_size));
    std::iota(next_.begin(), next_.end(), int64_t{0});
    // Fisher-Yates shuffle driven by Philox.
    for (int64_t k = vocab_size - 1; k > 0; --k) {
      const philox::Block b = philox::generate(seed_, kTableCounterBase + static_cast<uint64_t>(k));
      const auto j = static_cast<int64_t>(uniform_index(b, 0, static_cast<uint64_t>(k + 1)));
      std::swap(next_[static_cast<size_t>(k)], next_[static_cast<size_t>(j)]);
    }
  }

  void sample(uint64_t index, int64_t length, int64_t* out) const override {
    const uint64_t base = index * static_cast<uint64_t>(length);
    const auto v = static_cast<uint64_t>(vocab_);
    for (int64_t j = 0; j < length; ++j) {
      const philox::Block b = philox::generate(seed_, base + static_cast<uint64_t>(j));
      const bool noise = philox::uniform_from_bits(b.v[0]) <= kSyntheticNoise;
      if (j == 0 || noise) {
        out[j] = static_cast<int64_t>(uniform_index(b, 1, v));
      } else {
        out[j] = next_[static_cast<size_t>(out[j - 1])];
      }
    }
  }

  int64_t vocab_size() const override { return vocab_; }
  std::string describe() const override {
    return fmt::format("synthetic bigram stream (vocab_size {}, seed {})", vocab_, seed_);
  }

 private:
  uint64_t seed_;
  int64_t vocab_;
  std::vector<int64_t> next_;  // [V] the permutation: the likely successor of each token
};

// Tokens stored contiguously, either in a mapped file or in memory.
class FlatSource final : public TokenSource {
 public:
  using Storage = std::variant<MappedFile, std::string>;

  FlatSource(Storage storage, int64_t header_bytes, int64_t width, uint64_t seed,
             int64_t min_length, int64_t vocab_size, std::string description)
      : storage_(std::move(storage)),
        width_(width),
        seed_(seed),
        vocab_(vocab_size),
        description_(std::move(description)) {
    const uint8_t* base =
        std::holds_alternative<MappedFile>(storage_)
            ? std::get<MappedFile>(storage_).data()
            : reinterpret_cast<const uint8_t*>(std::get<std::string>(storage_).data());
    const size_t size = std::holds_alternative<MappedFile>(storage_)
                            ? std::get<MappedFile>(storage_).size()
                            : std::get<std::string>(storage_).size();
    tokens_ = base + header_bytes;
    count_ = static_cast<int64_t>((size - static_cast<size_t>(header_bytes)) /
                                  static_cast<size_t>(width));
    AUTOTP_CHECK(count_ >= min_length,
                 "data: {} holds {} tokens, but a sample needs seq_len + 1 = {}", description_,
                 count_, min_length);
    check_tokens_below_vocab();
  }

  void sample(uint64_t index, int64_t length, int64_t* out) const override {
    AUTOTP_CHECK(length <= count_, "data: {} holds {} tokens, a sample of {} does not fit",
                 description_, count_, length);
    const philox::Block b = philox::generate(seed_, index);
    const auto start =
        static_cast<int64_t>(uniform_index(b, 0, static_cast<uint64_t>(count_ - length + 1)));
    for (int64_t j = 0; j < length; ++j) {
      const int64_t t = token_at(start + j);
      AUTOTP_CHECK(t < vocab_, "data: {}: token {} at position {} is not below vocab_size {}",
                   description_, t, start + j, vocab_);
      out[j] = t;
    }
  }

  int64_t vocab_size() const override { return vocab_; }
  std::string describe() const override { return description_; }

 private:
  // Every token is checked once, up front (one pass at memory speed, a few seconds for
  // billions of tokens), so a bad token fails the run before it starts rather than when a
  // sample first reaches it, hours in; sample() keeps its check for the tokens it reads.
  void check_tokens_below_vocab() const {
    if (vocab_ >= (int64_t{1} << (8 * width_))) return;  // every value of the width fits
    int64_t largest = 0;
    for (int64_t i = 0; i < count_; ++i)
      largest = std::max(largest, token_at(i));
    if (largest < vocab_) return;
    for (int64_t i = 0; i < count_; ++i) {
      AUTOTP_CHECK(token_at(i) < vocab_,
                   "data: {}: token {} at position {} is not below vocab_size {} (the file's "
                   "largest token is {})",
                   description_, token_at(i), i, vocab_, largest);
    }
  }

  int64_t token_at(int64_t i) const {
    const uint8_t* p = tokens_ + i * width_;
    switch (width_) {
      case 1:
        return p[0];
      case 2: {
        uint16_t v;
        std::memcpy(&v, p, 2);
        return v;
      }
      default: {
        uint32_t v;
        std::memcpy(&v, p, 4);
        return v;
      }
    }
  }

  Storage storage_;
  const uint8_t* tokens_ = nullptr;
  int64_t count_ = 0;
  int64_t width_;
  uint64_t seed_;
  int64_t vocab_;
  std::string description_;
};

// llm.c's token file header: 256 little-endian int32, [0] magic, [1] version, [2] count.
constexpr int32_t kLlmcMagic = 20240520;
constexpr int64_t kLlmcHeaderBytes = 256 * 4;

}  // namespace

DataSourceType data_source_type_from_name(const std::string& name) {
  if (name == "synthetic") return DataSourceType::Synthetic;
  if (name == "tokens") return DataSourceType::Tokens;
  if (name == "text") return DataSourceType::Text;
  AUTOTP_FAIL("data type '{}' is not supported (expected synthetic, tokens or text)", name);
}

const char* data_source_type_name(DataSourceType type) {
  switch (type) {
    case DataSourceType::Synthetic:
      return "synthetic";
    case DataSourceType::Tokens:
      return "tokens";
    case DataSourceType::Text:
      return "text";
  }
  AUTOTP_ASSERT(false, "unknown DataSourceType");
}

TokenDType token_dtype_from_name(const std::string& name) {
  if (name == "uint16") return TokenDType::U16;
  if (name == "uint32") return TokenDType::U32;
  AUTOTP_FAIL("token dtype '{}' is not supported (expected uint16 or uint32)", name);
}

const char* token_dtype_name(TokenDType dtype) {
  return dtype == TokenDType::U16 ? "uint16" : "uint32";
}

int64_t token_dtype_size(TokenDType dtype) {
  return dtype == TokenDType::U16 ? 2 : 4;
}

std::unique_ptr<TokenSource> make_synthetic_source(uint64_t seed, int64_t vocab_size) {
  return std::make_unique<SyntheticSource>(seed, vocab_size);
}

std::unique_ptr<TokenSource> make_token_file_source(const std::string& path, TokenDType dtype,
                                                    uint64_t seed, int64_t min_length,
                                                    int64_t vocab_size) {
  MappedFile file(path);
  const int64_t width = token_dtype_size(dtype);
  const auto size = static_cast<int64_t>(file.size());
  int64_t header = 0;
  if (size >= kLlmcHeaderBytes) {
    int32_t fields[3];
    std::memcpy(fields, file.data(), sizeof(fields));
    if (fields[0] == kLlmcMagic) {
      const int32_t version = fields[1];
      AUTOTP_CHECK(version == 1 || version == 2,
                   "data: token file '{}' has llm.c's header but version {} (expected 1 for "
                   "uint16 or 2 for uint32)",
                   path, version);
      const TokenDType header_dtype = version == 1 ? TokenDType::U16 : TokenDType::U32;
      AUTOTP_CHECK(header_dtype == dtype,
                   "data: token file '{}' is an llm.c file of {} tokens (header version {}), "
                   "but data.dtype is {}",
                   path, token_dtype_name(header_dtype), version, token_dtype_name(dtype));
      const int64_t expected = kLlmcHeaderBytes + static_cast<int64_t>(fields[2]) * width;
      AUTOTP_CHECK(size == expected,
                   "data: token file '{}' has {} bytes, but its llm.c header announces {} "
                   "tokens ({} bytes with the 1024-byte header)",
                   path, size, fields[2], expected);
      header = kLlmcHeaderBytes;
    }
  }
  AUTOTP_CHECK((size - header) % width == 0,
               "data: token file '{}' has {} bytes, not a multiple of the token width {} "
               "(dtype {}); is data.dtype right?",
               path, size - header, width, token_dtype_name(dtype));
  const int64_t count = (size - header) / width;
  std::string description =
      fmt::format("token file '{}' ({}, {} tokens{})", path, token_dtype_name(dtype), count,
                  header != 0 ? ", llm.c header" : "");
  const int64_t vocab = vocab_size > 0 ? vocab_size : (int64_t{1} << (8 * width));
  return std::make_unique<FlatSource>(std::move(file), header, width, seed, min_length, vocab,
                                      std::move(description));
}

std::unique_ptr<TokenSource> make_text_file_source(const std::string& path, uint64_t seed,
                                                   int64_t min_length) {
  MappedFile file(path);
  std::string description =
      fmt::format("text file '{}' ({} bytes, byte tokens)", path, file.size());
  return std::make_unique<FlatSource>(std::move(file), 0, 1, seed, min_length, 256,
                                      std::move(description));
}

std::unique_ptr<TokenSource> make_text_source(std::string text, uint64_t seed, int64_t min_length,
                                              std::string name) {
  std::string description = fmt::format("{} ({} bytes, byte tokens)", name, text.size());
  return std::make_unique<FlatSource>(std::move(text), 0, 1, seed, min_length, 256,
                                      std::move(description));
}

std::vector<int64_t> byte_tokenize(const std::string& text) {
  std::vector<int64_t> tokens(text.size());
  for (size_t i = 0; i < text.size(); ++i)
    tokens[i] = static_cast<unsigned char>(text[i]);
  return tokens;
}

std::string byte_detokenize(const std::vector<int64_t>& tokens) {
  std::string text(tokens.size(), '\0');
  for (size_t i = 0; i < tokens.size(); ++i) {
    AUTOTP_CHECK(tokens[i] >= 0 && tokens[i] < 256,
                 "byte_detokenize: token {} at position {} is not a byte", tokens[i], i);
    text[i] = static_cast<char>(static_cast<unsigned char>(tokens[i]));
  }
  return text;
}

std::unique_ptr<TokenSource> make_token_source(const DataConfig& config) {
  AUTOTP_CHECK(config.seq_len >= 1, "data: seq_len must be >= 1, got {}", config.seq_len);
  const int64_t min_length = config.seq_len + 1;
  switch (config.type) {
    case DataSourceType::Synthetic:
      return make_synthetic_source(config.seed, config.vocab_size);
    case DataSourceType::Tokens:
      AUTOTP_CHECK(!config.path.empty(), "data: type tokens needs data.path");
      return make_token_file_source(config.path, config.dtype, config.seed, min_length,
                                    config.vocab_size);
    case DataSourceType::Text:
      if (config.path.empty()) {
        return make_text_source(std::string(embedded_corpus()), config.seed, min_length,
                                kEmbeddedCorpusName);
      }
      return make_text_file_source(config.path, config.seed, min_length);
  }
  AUTOTP_ASSERT(false, "unknown DataSourceType");
}

DataLoader::DataLoader(std::shared_ptr<const TokenSource> source, int64_t seq_len,
                       DataLayout layout)
    : source_(std::move(source)), seq_len_(seq_len), layout_(layout) {
  AUTOTP_ASSERT(source_ != nullptr, "DataLoader needs a source");
  AUTOTP_CHECK(seq_len_ >= 1, "data: seq_len must be >= 1, got {}", seq_len_);
  AUTOTP_CHECK(layout_.micro_batch >= 1 && layout_.grad_accum >= 1 && layout_.dp_size >= 1,
               "data: micro_batch ({}), grad_accum ({}) and dp_size ({}) must be >= 1",
               layout_.micro_batch, layout_.grad_accum, layout_.dp_size);
  AUTOTP_CHECK(layout_.dp_rank >= 0 && layout_.dp_rank < layout_.dp_size,
               "data: dp_rank {} is outside [0, dp_size = {})", layout_.dp_rank, layout_.dp_size);
}

uint64_t DataLoader::sample_index(int64_t step, int64_t micro_step, int64_t row) const {
  AUTOTP_CHECK(step >= 0, "data: step must be >= 0, got {}", step);
  AUTOTP_CHECK(micro_step >= 0 && micro_step < layout_.grad_accum,
               "data: micro_step {} is outside [0, grad_accum = {})", micro_step,
               layout_.grad_accum);
  AUTOTP_ASSERT(row >= 0 && row < layout_.micro_batch, "row {} out of range", row);
  const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
  return ((u(step) * u(layout_.grad_accum) + u(micro_step)) * u(layout_.dp_size) +
          u(layout_.dp_rank)) *
             u(layout_.micro_batch) +
         u(row);
}

Batch DataLoader::batch(int64_t step, int64_t micro_step) const {
  const int64_t rows = layout_.micro_batch, s = seq_len_;
  std::vector<int64_t> window(static_cast<size_t>(s + 1));
  std::vector<int64_t> inputs(static_cast<size_t>(rows * s)), labels(inputs.size());
  for (int64_t b = 0; b < rows; ++b) {
    source_->sample(sample_index(step, micro_step, b), s + 1, window.data());
    std::copy(window.begin(), window.end() - 1, inputs.begin() + b * s);
    std::copy(window.begin() + 1, window.end(), labels.begin() + b * s);
  }
  return Batch{Tensor::from_vector_i64(inputs, {rows, s}),
               Tensor::from_vector_i64(labels, {rows, s})};
}

}  // namespace autotp
