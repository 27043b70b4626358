// Training data: token sources (synthetic, flat token file, raw text as bytes) and a loader
// that builds each micro-batch as a pure function of (seed, step, micro step, dp rank/size).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace autotp {

enum class DataSourceType { Synthetic, Tokens, Text };
enum class TokenDType { U16, U32 };

DataSourceType data_source_type_from_name(const std::string& name);  // synthetic|tokens|text
const char* data_source_type_name(DataSourceType type);
TokenDType token_dtype_from_name(const std::string& name);  // uint16|uint32
const char* token_dtype_name(TokenDType dtype);
int64_t token_dtype_size(TokenDType dtype);  // 2 or 4 bytes

// The YAML `data` section, resolved.
struct DataConfig {
  DataSourceType type = DataSourceType::Synthetic;
  std::string path;                    // tokens (required), text (empty: the embedded corpus)
  TokenDType dtype = TokenDType::U16;  // tokens
  int64_t seq_len = 0;                 // tokens per row (S)
  uint64_t seed = 0;                   // sampling seed (and the synthetic stream's seed)
  // synthetic: the token range [0, vocab_size) (required, >= 2). tokens: when > 0, every
  // token read is checked to be < vocab_size. text: ignored (byte tokens, vocabulary 256).
  int64_t vocab_size = 0;
};

// A stream of samples: sample `index` is a fixed sequence of tokens, whatever asks for it.
class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // Writes the `length` tokens of sample `index` to out[0, length).
  virtual void sample(uint64_t index, int64_t length, int64_t* out) const = 0;
  // Every token is in [0, vocab_size()).
  virtual int64_t vocab_size() const = 0;
  // One line for logs: "tokens file 'x.bin' (uint16, 1000000 tokens)".
  virtual std::string describe() const = 0;
};

// Synthetic, learnable tokens. A permutation `next` of [0, V) is drawn from Philox(seed); a
// sample starts at a random token and each following token is next[previous] with
// probability 0.9, or a uniformly random token with probability 0.1. A model that learns the
// bigram table reaches a loss near 0.1*ln(V) + 0.33 nats, far below the initial ln(V).
std::unique_ptr<TokenSource> make_synthetic_source(uint64_t seed, int64_t vocab_size);

// A flat little-endian uint16/uint32 token file (nanoGPT's .bin), memory-mapped. A file that
// starts with llm.c's 256-int32 header (magic 20240520, version 1 = uint16 / 2 = uint32,
// token count) is recognized and the header skipped. Sample `index` is the window of `length`
// tokens starting at a position drawn uniformly from [0, N - length] by Philox(seed, index).
// Errors (naming the file): unreadable or empty file, size not a multiple of the token width,
// fewer than `min_length` tokens, header/dtype mismatch; with vocab_size > 0, a token >= it.
std::unique_ptr<TokenSource> make_token_file_source(const std::string& path, TokenDType dtype,
                                                    uint64_t seed, int64_t min_length,
                                                    int64_t vocab_size = 0);

// Raw text through the built-in byte-level tokenizer (token = byte value, vocabulary 256),
// from a memory-mapped file or from bytes in memory (e.g. an embedded corpus). Windows are
// sampled as for token files.
std::unique_ptr<TokenSource> make_text_file_source(const std::string& path, uint64_t seed,
                                                   int64_t min_length);
std::unique_ptr<TokenSource> make_text_source(std::string text, uint64_t seed, int64_t min_length,
                                              std::string name = "text");

// The byte-level tokenizer itself: one token per byte (0..255), and back.
std::vector<int64_t> byte_tokenize(const std::string& text);
std::string byte_detokenize(const std::vector<int64_t>& tokens);

// The source DataConfig describes (min_length = seq_len + 1); type text without a path reads
// the embedded corpus (engine/embedded_corpus.h).
std::unique_ptr<TokenSource> make_token_source(const DataConfig& config);

// How a global batch is split: each optimizer step consumes G = micro_batch * grad_accum *
// dp_size samples.
struct DataLayout {
  int64_t micro_batch = 1;  // rows per micro-batch (train_micro_batch_size_per_gpu)
  int64_t grad_accum = 1;   // micro-batches per optimizer step on each rank
  int64_t dp_rank = 0;
  int64_t dp_size = 1;
};

// One micro-batch: next-token prediction pairs.
struct Batch {
  Tensor input_ids;  // [B, S] i64: tokens t_0 .. t_{S-1} of each sample
  Tensor labels;     // [B, S] i64: tokens t_1 .. t_S (already shifted: labels[b, s] follows
                     // input_ids[b, s]; the loss needs no further shift)
};

// Builds micro-batches with no hidden state: batch(step, micro_step) depends only on the
// source (its seed) and the layout, so a resumed run continues from the step number alone.
//
// Sample indices: optimizer step s owns the global samples [s*G, (s+1)*G). Row b of micro-step
// m on DP rank r is sample ((s * grad_accum + m) * dp_size + r) * micro_batch + b, so ranks
// read disjoint samples, and any (grad_accum, dp_size) split of the same G sees the same set
// of samples per step (DP=2 x accum=1 trains on the same data as DP=1 x accum=2).
class DataLoader {
 public:
  DataLoader(std::shared_ptr<const TokenSource> source, int64_t seq_len, DataLayout layout);

  Batch batch(int64_t step, int64_t micro_step) const;
  uint64_t sample_index(int64_t step, int64_t micro_step, int64_t row) const;

  int64_t seq_len() const { return seq_len_; }
  const DataLayout& layout() const { return layout_; }
  const TokenSource& source() const { return *source_; }

 private:
  std::shared_ptr<const TokenSource> source_;
  int64_t seq_len_;
  DataLayout layout_;
};

}  // namespace autotp
