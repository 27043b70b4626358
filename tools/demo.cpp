// The demo: argument parsing, the byte-level MLP language model (HF-style names), a
// cross-entropy loss, Adam on raw data, and the training loop.
#include "tools/demo.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "core/module.h"
#include "core/ops.h"
#include "engine/embedded_corpus.h"
#include "layers/embedding.h"
#include "layers/init.h"
#include "layers/linear.h"

namespace autotp::tools {

const char* const kDemoUsage = "autotp demo [--steps N] [--seed S] [--check]";

namespace {

constexpr int64_t kVocab = 256;  // one token per byte value
constexpr int64_t kContext = 8;  // bytes of context per prediction
constexpr int64_t kEmbedDim = 32;
constexpr int64_t kHidden = 128;
constexpr int64_t kBatch = 32;
constexpr double kLearningRate = 1e-2;
constexpr double kInitStd = 0.02;     // HF initializer_range
constexpr int64_t kLogEvery = 10;     // log interval; longer runs stretch it to ~25 lines
constexpr int64_t kFinalWindow = 10;  // steps averaged into the final loss
constexpr double kCheckRatio = 0.8;   // --check: final loss must be below this x first loss

struct DemoOptions {
  int64_t steps = 1000;
  uint64_t seed = 0;
  bool check = false;
};

int64_t parse_int(const std::string& flag, const std::string& value, int64_t min) {
  size_t used = 0;
  int64_t parsed = 0;
  try {
    parsed = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  AUTOTP_CHECK(used == value.size() && !value.empty() && parsed >= min,
               "demo: {} expects an integer >= {}, got '{}'", flag, min, value);
  return parsed;
}

DemoOptions parse_options(const std::vector<std::string>& args) {
  DemoOptions options;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--check") {
      options.check = true;
    } else if (arg == "--steps" || arg == "--seed") {
      AUTOTP_CHECK(i + 1 < args.size(), "demo: {} needs a value", arg);
      const int64_t value = parse_int(arg, args[++i], arg == "--steps" ? 1 : 0);
      if (arg == "--steps")
        options.steps = value;
      else
        options.seed = static_cast<uint64_t>(value);
    } else {
      AUTOTP_FAIL("demo: unknown argument '{}' (usage: {})", arg, kDemoUsage);
    }
  }
  AUTOTP_CHECK(!options.check || options.steps >= kFinalWindow,
               "demo: --check needs --steps >= {} (the final loss averages the last {} steps)",
               kFinalWindow, kFinalWindow);
  return options;
}

// Next-byte model: embed each of the last kContext bytes, concatenate, one tanh hidden layer,
// logits over the 256 byte values. Children are looked up by name on each call.
class ByteMlpLm : public Module {
 public:
  ByteMlpLm() {
    register_module("embed_tokens", std::make_shared<Embedding>(kVocab, kEmbedDim));
    register_module("up_proj", std::make_shared<Linear>(kContext * kEmbedDim, kHidden));
    register_module("lm_head", std::make_shared<Linear>(kHidden, kVocab));
  }
  std::string type_name() const override { return "ByteMlpLm"; }

  // ids [B, kContext] (i64) -> logits [B, kVocab]
  Tensor forward(const Tensor& ids) {
    const int64_t batch = ids.size(0);
    const Tensor embedded = child_as<UnaryModule>("embed_tokens").forward(ids);       // [B, C, E]
    const Tensor flat = embedded.reshape({batch, kContext * kEmbedDim});              // [B, C*E]
    const Tensor hidden = ops::tanh(child_as<UnaryModule>("up_proj").forward(flat));  // [B, H]
    return child_as<UnaryModule>("lm_head").forward(hidden);                          // [B, V]
  }
};

// Mean cross entropy of logits [N, V] against targets (N ids).
Tensor cross_entropy_loss(const Tensor& logits, const std::vector<int64_t>& targets) {
  const Tensor target_ids =
      Tensor::from_vector_i64(targets, {static_cast<int64_t>(targets.size())});
  return ops::cross_entropy(logits, target_ids);
}

// Adam (Kingma & Ba) with bias correction, updating f32 parameters in place.
class Adam {
 public:
  Adam(std::vector<Tensor> params, double lr) : params_(std::move(params)), lr_(lr) {
    for (const Tensor& p : params_) {
      m_.emplace_back(static_cast<size_t>(p.numel()), 0.0f);
      v_.emplace_back(static_cast<size_t>(p.numel()), 0.0f);
    }
  }

  void step() {
    NoGradGuard no_grad;
    ++t_;
    const double correction1 = 1.0 - std::pow(kBeta1, static_cast<double>(t_));
    const double correction2 = 1.0 - std::pow(kBeta2, static_cast<double>(t_));
    for (size_t k = 0; k < params_.size(); ++k) {
      const Tensor grad_tensor = params_[k].grad();
      if (!grad_tensor.defined()) continue;
      const Tensor g_contig = grad_tensor.contiguous();
      AUTOTP_ASSERT(params_[k].is_contiguous(), "demo parameters are contiguous");
      float* w = params_[k].data<float>();
      const float* g = g_contig.data<float>();
      std::vector<float>& m = m_[k];
      std::vector<float>& v = v_[k];
      for (size_t i = 0; i < m.size(); ++i) {
        m[i] = static_cast<float>(kBeta1 * m[i] + (1.0 - kBeta1) * g[i]);
        v[i] = static_cast<float>(kBeta2 * v[i] + (1.0 - kBeta2) * g[i] * g[i]);
        const double m_hat = m[i] / correction1, v_hat = v[i] / correction2;
        w[i] = static_cast<float>(w[i] - lr_ * m_hat / (std::sqrt(v_hat) + kEps));
      }
    }
  }

 private:
  static constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
  std::vector<Tensor> params_;
  std::vector<std::vector<float>> m_, v_;  // per parameter, numel each
  double lr_;
  int64_t t_ = 0;
};

// A batch of (context, next byte) pairs at positions drawn from `gen`.
struct Batch {
  Tensor ids;                    // [B, kContext] i64
  std::vector<int64_t> targets;  // B next bytes
};

Batch draw_batch(std::string_view text, Generator& gen) {
  const int64_t positions = static_cast<int64_t>(text.size()) - kContext;
  const std::vector<double> u = rand({kBatch}, gen, DType::F64).to_vector();
  std::vector<int64_t> ids(static_cast<size_t>(kBatch * kContext));
  Batch batch;
  for (int64_t b = 0; b < kBatch; ++b) {
    const int64_t start =
        std::min(positions - 1, static_cast<int64_t>(u[b] * static_cast<double>(positions)));
    for (int64_t c = 0; c < kContext; ++c) {
      ids[b * kContext + c] = static_cast<unsigned char>(text[start + c]);
    }
    batch.targets.push_back(static_cast<unsigned char>(text[start + kContext]));
  }
  batch.ids = Tensor::from_vector_i64(ids, {kBatch, kContext});
  return batch;
}

// Greedy continuation of `prompt` (at least kContext bytes) by `length` bytes.
std::string generate(ByteMlpLm& model, std::string prompt, int64_t length) {
  NoGradGuard no_grad;
  for (int64_t i = 0; i < length; ++i) {
    std::vector<int64_t> ids;
    for (size_t c = prompt.size() - kContext; c < prompt.size(); ++c) {
      ids.push_back(static_cast<unsigned char>(prompt[c]));
    }
    const Tensor logits = model.forward(Tensor::from_vector_i64(ids, {1, kContext}));
    prompt += static_cast<char>(ops::argmax(logits, -1).to_vector_i64()[0]);
  }
  for (char& ch : prompt) {
    if (ch == '\n') ch = ' ';
    if (static_cast<unsigned char>(ch) < 32 || static_cast<unsigned char>(ch) > 126) ch = '?';
  }
  return prompt;
}

}  // namespace

int run_demo(const std::vector<std::string>& args) {
  const DemoOptions options = parse_options(args);
  const std::string_view text = embedded_corpus();

  auto model = std::make_shared<ByteMlpLm>();
  Generator init_gen(options.seed);
  init::init_weights_hf(*model, init_gen, kInitStd);
  Generator data_gen(options.seed, /*offset=*/uint64_t{1} << 48);  // a disjoint stream
  Adam optimizer(model->parameters(), kLearningRate);

  std::printf(
      "autotp demo: trains a byte-level language model on %zu bytes of embedded English text.\n"
      "Each step predicts the next byte from the previous %lld bytes for a batch of %lld\n"
      "positions: Embedding(256, %lld) per byte, concatenated -> Linear -> tanh -> Linear(%lld, "
      "256),\ncross-entropy loss, backward through autotp's autograd, Adam (lr %g) on the "
      "parameters.\nAn untrained model guesses uniformly: loss ln 256 = %.4f.\n\n%s\n"
      "parameters: %lld   steps: %lld   seed: %llu\n\n",
      text.size(), static_cast<long long>(kContext), static_cast<long long>(kBatch),
      static_cast<long long>(kEmbedDim), static_cast<long long>(kHidden), kLearningRate,
      std::log(256.0), model->to_string().c_str(), static_cast<long long>(model->num_parameters()),
      static_cast<long long>(options.steps), static_cast<unsigned long long>(options.seed));

  // Every kLogEvery steps, or a multiple of it that keeps long runs to about 25 lines.
  const int64_t log_every =
      std::max<int64_t>(kLogEvery, (options.steps / 25 + kLogEvery - 1) / kLogEvery * kLogEvery);
  std::vector<double> losses;
  using Clock = std::chrono::steady_clock;
  auto window_start = Clock::now();
  int64_t window_steps = 0;
  for (int64_t step = 1; step <= options.steps; ++step) {
    const Batch batch = draw_batch(text, data_gen);
    model->zero_grad();
    const Tensor loss = cross_entropy_loss(model->forward(batch.ids), batch.targets);
    loss.backward();
    optimizer.step();
    const double value = loss.item();
    AUTOTP_CHECK(std::isfinite(value), "demo: the loss became {} at step {}", value, step);
    losses.push_back(value);
    ++window_steps;
    if (step == 1 || step % log_every == 0 || step == options.steps) {
      const double ms =
          std::chrono::duration<double, std::milli>(Clock::now() - window_start).count();
      std::printf("step %lld/%lld  loss %.4f  (%.1f ms/step)\n", static_cast<long long>(step),
                  static_cast<long long>(options.steps), value,
                  ms / static_cast<double>(window_steps));
      std::fflush(stdout);
      window_start = Clock::now();
      window_steps = 0;
    }
  }

  const size_t window = std::min<size_t>(static_cast<size_t>(kFinalWindow), losses.size());
  double final_loss = 0.0;
  for (size_t i = losses.size() - window; i < losses.size(); ++i)
    final_loss += losses[i];
  final_loss /= static_cast<double>(window);
  std::printf(
      "\ninitial loss %.4f (uniform guess: %.4f)\nfinal loss   %.4f (mean of the last %zu "
      "steps)\n",
      losses.front(), std::log(256.0), final_loss, window);
  model->eval();
  std::printf("sample (greedy): \"%s\"\n",
              generate(*model, std::string(text.substr(1, kContext * 2)), 48).c_str());

  if (options.check) {
    const double bound = kCheckRatio * losses.front();
    if (!(final_loss < bound)) {
      std::printf("check FAILED: final loss %.4f is not below %.1f x initial loss = %.4f\n",
                  final_loss, kCheckRatio, bound);
      return 1;
    }
    std::printf("check passed: final loss %.4f < %.1f x initial loss = %.4f\n", final_loss,
                kCheckRatio, bound);
  }
  return 0;
}

}  // namespace autotp::tools
