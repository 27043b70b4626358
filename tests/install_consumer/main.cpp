// The README's library example: a tiny program built against the installed autotp package.
// It fits y = 3x - 1 with one Linear layer and checks that it learned the line.
#include <autotp/core/ops.h>
#include <autotp/layers/init.h>
#include <autotp/layers/linear.h>

#include <cmath>
#include <cstdio>

int main() {
  using namespace autotp;
  Generator gen(/*seed=*/42);
  Linear layer(/*in_features=*/1, /*out_features=*/1);
  init::normal_(layer.weight(), /*std=*/0.5, gen);
  const Tensor x = Tensor::arange(-1.0, 1.0, 0.125).reshape({-1, 1});
  const Tensor y = x * 3.0 - 1.0;
  for (int step = 0; step < 200; ++step) {
    Tensor loss = ops::mean(ops::pow(layer.forward(x) - y, 2.0));
    layer.zero_grad();
    loss.backward();
    NoGradGuard no_grad;
    for (auto& [name, p] : layer.named_parameters())
      p.copy_(p - p.grad() * 0.5);
  }
  const double w = layer.weight().item(), b = layer.bias().item();
  std::printf("learned y = %.4f x + %.4f\n", w, b);
  return std::fabs(w - 3.0) < 1e-3 && std::fabs(b + 1.0) < 1e-3 ? 0 : 1;
}
