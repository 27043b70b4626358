// Data: deterministic stateless batches, disjoint DP shards, shifted labels, token files
// (flat and llm.c-headed) with their errors, the byte-level text tokenizer, synthetic data.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "engine/data.h"
#include "tests/core/nn_test_helpers.h"

namespace autotp {
namespace {

namespace fs = std::filesystem;

// A file under the temp directory, removed at the end of the test.
class TempFile {
 public:
  TempFile(const std::string& name, const std::string& bytes)
      : path_(fs::temp_directory_path() / ("autotp_test_data_" + name)) {
    std::ofstream out(path_, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  ~TempFile() { fs::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

template <typename T>
std::string raw_bytes(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

std::vector<uint16_t> iota16(int n) {
  std::vector<uint16_t> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    v[static_cast<size_t>(i)] = static_cast<uint16_t>(i);
  return v;
}

DataLayout layout(int64_t micro_batch, int64_t grad_accum = 1, int64_t dp_rank = 0,
                  int64_t dp_size = 1) {
  DataLayout l;
  l.micro_batch = micro_batch;
  l.grad_accum = grad_accum;
  l.dp_rank = dp_rank;
  l.dp_size = dp_size;
  return l;
}

DataLoader synthetic_loader(DataLayout layout, uint64_t seed = 5, int64_t seq_len = 9) {
  return DataLoader(make_synthetic_source(seed, 37), seq_len, layout);
}

// The rows of a [B, S] batch tensor.
std::vector<std::vector<int64_t>> rows_of(const Tensor& t) {
  const std::vector<int64_t> v = t.to_vector_i64();
  std::vector<std::vector<int64_t>> rows;
  for (int64_t b = 0; b < t.size(0); ++b) {
    rows.emplace_back(v.begin() + b * t.size(1), v.begin() + (b + 1) * t.size(1));
  }
  return rows;
}

TEST(DataLoader, TheSameSeedAndStepGiveTheSameBatch) {
  const DataLoader a = synthetic_loader(layout(3, 2, 0, 1));
  const DataLoader b = synthetic_loader(layout(3, 2, 0, 1));
  for (int64_t step : {0, 1, 17}) {
    const Batch x = a.batch(step, 1), y = b.batch(step, 1);
    EXPECT_EQ(x.input_ids.shape(), (Shape{3, 9}));
    EXPECT_EQ(x.input_ids.dtype(), DType::I64);
    EXPECT_EQ(x.input_ids.to_vector_i64(), y.input_ids.to_vector_i64());
    EXPECT_EQ(x.labels.to_vector_i64(), y.labels.to_vector_i64());
  }
  // No hidden state: step 7 is the same whether or not steps 0..6 were read first.
  EXPECT_EQ(a.batch(7, 0).input_ids.to_vector_i64(), b.batch(7, 0).input_ids.to_vector_i64());
  EXPECT_NE(a.batch(7, 0).input_ids.to_vector_i64(), a.batch(8, 0).input_ids.to_vector_i64());
  EXPECT_NE(a.batch(7, 0).input_ids.to_vector_i64(), a.batch(7, 1).input_ids.to_vector_i64());
  const DataLoader other_seed = synthetic_loader(layout(3, 2, 0, 1), 6);
  EXPECT_NE(a.batch(0, 0).input_ids.to_vector_i64(),
            other_seed.batch(0, 0).input_ids.to_vector_i64());
}

TEST(DataLoader, LabelsAreTheInputsShiftedByOne) {
  TempFile file("shift.bin", raw_bytes(iota16(500)));
  const DataLoader loader(make_token_file_source(file.path(), TokenDType::U16, 3, 13), 12,
                          layout(4, 1, 0, 1));
  for (int64_t step = 0; step < 5; ++step) {
    const Batch batch = loader.batch(step, 0);
    const auto inputs = rows_of(batch.input_ids), labels = rows_of(batch.labels);
    for (size_t b = 0; b < inputs.size(); ++b) {
      for (size_t s = 0; s < inputs[b].size(); ++s) {
        EXPECT_EQ(labels[b][s], inputs[b][s] + 1);  // the file counts 0, 1, 2, ...
      }
    }
  }
  // The same holds on synthetic data, where a label is the next input.
  const Batch syn = synthetic_loader(layout(2, 1, 0, 1)).batch(3, 0);
  const auto in = rows_of(syn.input_ids), lab = rows_of(syn.labels);
  for (size_t b = 0; b < in.size(); ++b) {
    for (size_t s = 0; s + 1 < in[b].size(); ++s)
      EXPECT_EQ(lab[b][s], in[b][s + 1]);
  }
}

TEST(DataLoader, DataParallelRanksReadDisjointSamplesThatTogetherFormTheGlobalBatch) {
  const int64_t micro = 2;
  std::multiset<std::vector<int64_t>> dp1_rows, dp2_rows;
  std::set<uint64_t> indices;
  const DataLoader single = synthetic_loader(layout(micro, 2, 0, 1));
  for (int64_t m = 0; m < 2; ++m) {
    for (const auto& row : rows_of(single.batch(4, m).input_ids))
      dp1_rows.insert(row);
  }
  for (int64_t rank = 0; rank < 2; ++rank) {
    const DataLoader loader = synthetic_loader(layout(micro, 1, rank, 2));
    for (int64_t b = 0; b < micro; ++b)
      indices.insert(loader.sample_index(4, 0, b));
    for (const auto& row : rows_of(loader.batch(4, 0).input_ids))
      dp2_rows.insert(row);
  }
  EXPECT_EQ(indices.size(), 4u);     // no sample read by both ranks
  EXPECT_EQ(*indices.begin(), 16u);  // step 4 of G = 4 samples: 16..19
  EXPECT_EQ(*indices.rbegin(), 19u);
  EXPECT_EQ(dp1_rows, dp2_rows);  // DP=2 x accum 1 reads what DP=1 x accum 2 reads
  const DataLoader r0 = synthetic_loader(layout(micro, 1, 0, 2));
  const DataLoader r1 = synthetic_loader(layout(micro, 1, 1, 2));
  EXPECT_NE(r0.batch(0, 0).input_ids.to_vector_i64(), r1.batch(0, 0).input_ids.to_vector_i64());
}

TEST(DataLoader, RejectsABadLayout) {
  EXPECT_ERROR_CONTAINS(synthetic_loader(layout(1, 1, 2, 2)),
                        "dp_rank 2 is outside [0, dp_size = 2)");
  EXPECT_ERROR_CONTAINS(synthetic_loader(layout(1, 2, 0, 1)).batch(0, 2),
                        "micro_step 2 is outside [0, grad_accum = 2)");
}

TEST(TokenFile, AFileWhoseSizeIsNotAMultipleOfTheTokenWidthIsOneClearError) {
  TempFile odd("odd.bin", std::string(1001, '\1'));
  EXPECT_ERROR_CONTAINS(make_token_file_source(odd.path(), TokenDType::U16, 0, 2),
                        "token file '" + odd.path() +
                            "' has 1001 bytes, not a multiple of the "
                            "token width 2 (dtype uint16)");
  TempFile six("six.bin", std::string(6, '\1'));
  EXPECT_ERROR_CONTAINS(make_token_file_source(six.path(), TokenDType::U32, 0, 1),
                        "has 6 bytes, not a multiple of the token width 4 (dtype uint32)");
}

TEST(TokenFile, MissingEmptyAndTooShortFilesAreErrorsNamingTheFile) {
  EXPECT_ERROR_CONTAINS(make_token_file_source("/nonexistent/x.bin", TokenDType::U16, 0, 2),
                        "cannot open '/nonexistent/x.bin'");
  TempFile empty("empty.bin", "");
  EXPECT_ERROR_CONTAINS(make_token_file_source(empty.path(), TokenDType::U16, 0, 2),
                        "'" + empty.path() + "' is empty");
  TempFile small("small.bin", raw_bytes(iota16(10)));
  EXPECT_ERROR_CONTAINS(make_token_file_source(small.path(), TokenDType::U16, 0, 33),
                        "holds 10 tokens, but a sample needs seq_len + 1 = 33");
}

TEST(TokenFile, Uint32TokensAndTheVocabularyCheck) {
  const std::vector<uint32_t> tokens = {70000, 70001, 70002, 70003, 70004, 70005};
  TempFile file("u32.bin", raw_bytes(tokens));
  const auto source = make_token_file_source(file.path(), TokenDType::U32, 1, 4);
  std::vector<int64_t> out(4);
  source->sample(0, 4, out.data());
  EXPECT_GE(out[0], 70000);
  EXPECT_EQ(out[3], out[0] + 3);
  EXPECT_ERROR_CONTAINS(make_token_file_source(file.path(), TokenDType::U32, 1, 4, 32000),
                        "token 70000 at position 0 is not below vocab_size 32000 (the file's "
                        "largest token is 70005)");
}

// The whole file is checked when it is opened: a bad token that no early sample would reach
// fails the run before it starts.
TEST(TokenFile, ABadTokenAnywhereIsAnErrorBeforeTheFirstSample) {
  std::vector<uint16_t> tokens = iota16(5000);
  for (uint16_t& t : tokens)
    t = static_cast<uint16_t>(t % 50);
  tokens[4321] = 999;
  TempFile file("late_bad.bin", raw_bytes(tokens));
  EXPECT_ERROR_CONTAINS(make_token_file_source(file.path(), TokenDType::U16, 1, 8, 64),
                        "token 999 at position 4321 is not below vocab_size 64");
  tokens[4321] = 63;
  TempFile good("late_good.bin", raw_bytes(tokens));
  EXPECT_EQ(make_token_file_source(good.path(), TokenDType::U16, 1, 8, 64)->vocab_size(), 64);
}

TEST(TokenFile, LlmcHeadedFilesSkipTheHeaderAndCheckIt) {
  std::vector<int32_t> header(256, 0);
  header[0] = 20240520;
  header[1] = 1;  // uint16 tokens
  header[2] = 100;
  const std::string body = raw_bytes(iota16(100));
  TempFile file("llmc.bin", raw_bytes(header) + body);
  const auto source = make_token_file_source(file.path(), TokenDType::U16, 2, 100);
  std::vector<int64_t> out(100);
  source->sample(9, 100, out.data());  // the whole file: must start at token 0, not the header
  EXPECT_EQ(out[0], 0);
  EXPECT_EQ(out[99], 99);
  EXPECT_NE(source->describe().find("llm.c header"), std::string::npos);
  EXPECT_ERROR_CONTAINS(make_token_file_source(file.path(), TokenDType::U32, 2, 2),
                        "is an llm.c file of uint16 tokens (header version 1), but data.dtype "
                        "is uint32");
  header[2] = 99;
  TempFile wrong_count("llmc_count.bin", raw_bytes(header) + body);
  EXPECT_ERROR_CONTAINS(make_token_file_source(wrong_count.path(), TokenDType::U16, 2, 2),
                        "its llm.c header announces 99 tokens");
}

TEST(TokenFile, WindowStartsAreSpreadOverTheFile) {
  TempFile file("spread.bin", raw_bytes(iota16(1000)));
  const auto source = make_token_file_source(file.path(), TokenDType::U16, 4, 11);
  std::set<int64_t> starts;
  int64_t lo = 1000, hi = -1;
  std::vector<int64_t> out(11);
  for (uint64_t i = 0; i < 200; ++i) {
    source->sample(i, 11, out.data());
    starts.insert(out[0]);
    lo = std::min(lo, out[0]);
    hi = std::max(hi, out[0]);
  }
  EXPECT_GT(starts.size(), 150u);  // 200 draws from 990 positions rarely collide
  EXPECT_LT(lo, 100);
  EXPECT_GT(hi, 890);
  EXPECT_LE(hi, 989);  // the last window that fits: 989 + 10 = 999
}

TEST(TextData, TheByteTokenizerMapsEachByteToItsValue) {
  EXPECT_EQ(byte_tokenize("Hi!"), (std::vector<int64_t>{72, 105, 33}));
  EXPECT_EQ(byte_tokenize("\xC3\xA9"), (std::vector<int64_t>{195, 169}));  // UTF-8 e-acute
  EXPECT_EQ(byte_detokenize(byte_tokenize("round\ntrip\t\xFF")), "round\ntrip\t\xFF");
  EXPECT_ERROR_CONTAINS(byte_detokenize({65, 300}), "token 300 at position 1 is not a byte");
}

TEST(TextData, TextFileWindowsAreSubstringsOfTheText) {
  const std::string text =
      "the quick brown fox jumps over the lazy dog, twice: the quick brown fox";
  TempFile file("text.txt", text);
  DataConfig config;
  config.type = DataSourceType::Text;
  config.path = file.path();
  config.seq_len = 10;
  config.seed = 3;
  const DataLoader loader(make_token_source(config), config.seq_len, layout(3, 1, 0, 1));
  EXPECT_EQ(loader.source().vocab_size(), 256);
  const Batch batch = loader.batch(2, 0);
  const auto inputs = rows_of(batch.input_ids), labels = rows_of(batch.labels);
  for (size_t b = 0; b < inputs.size(); ++b) {
    std::vector<int64_t> window = inputs[b];
    window.push_back(labels[b].back());
    EXPECT_NE(text.find(byte_detokenize(window)), std::string::npos);
  }
  const auto in_memory = make_text_source(text, 3, 11, "embedded corpus");
  std::vector<int64_t> a(11), b(11);
  in_memory->sample(5, 11, a.data());
  loader.source().sample(5, 11, b.data());
  EXPECT_EQ(a, b);  // the same bytes and seed sample the same windows, file or memory
}

TEST(SyntheticData, TokensFollowAFixedSuccessorMostOfTheTimeSoTheStreamIsLearnable) {
  const int64_t vocab = 37;
  const auto source = make_synthetic_source(9, vocab);
  std::map<int64_t, std::map<int64_t, int>> successors;
  std::vector<int64_t> out(64);
  int pairs = 0;
  for (uint64_t i = 0; i < 200; ++i) {
    source->sample(i, 64, out.data());
    for (size_t j = 0; j < out.size(); ++j) {
      ASSERT_GE(out[j], 0);
      ASSERT_LT(out[j], vocab);
      if (j > 0) {
        ++successors[out[j - 1]][out[j]];
        ++pairs;
      }
    }
  }
  int predictable = 0;
  for (const auto& [token, counts] : successors) {
    int best = 0;
    for (const auto& [next, n] : counts)
      best = std::max(best, n);
    predictable += best;
  }
  // 90% follow the table, plus noise that happens to hit it: about 0.9 + 0.1/37.
  const double fraction = static_cast<double>(predictable) / pairs;
  EXPECT_GT(fraction, 0.87);
  EXPECT_LT(fraction, 0.93);
  EXPECT_EQ(successors.size(), static_cast<size_t>(vocab));  // every token occurs
  EXPECT_ERROR_CONTAINS(make_synthetic_source(0, 1), "vocab_size >= 2");
}

}  // namespace
}  // namespace autotp
