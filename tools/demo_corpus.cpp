// The demo's training text: a few kilobytes of plain English about training models with
// tensor parallelism, written for this project.
#include "tools/demo.h"

namespace autotp::tools {

std::string_view demo_corpus() {
  static constexpr std::string_view kText = R"corpus(
A neural network learns by guessing, measuring how wrong the guess was, and nudging its
weights so that the next guess is a little better. The guess is called the forward pass.
The measure of error is called the loss. The nudge comes from the backward pass, which
walks the recorded graph of operations in reverse and computes, for every weight, how
much the loss would change if that weight moved a tiny step. An optimizer then moves
each weight a small distance against its gradient, and the whole cycle starts again.

A language model is trained on text. It reads a few characters or words and tries to
predict the one that comes next. At the start it knows nothing, so every byte looks
equally likely and the loss is the logarithm of the number of choices. After a few
hundred steps it has learned that spaces follow words, that the letter q is followed by
u, and that a sentence ends with a period. After many more steps it learns grammar,
facts and style. The model in this demo is tiny, but the loop is the same one that
trains the largest models in the world.

Large models do not fit on one device. A single layer of a big transformer may hold
hundreds of millions of numbers, and the activations of a long sequence take even more
memory than the weights. Tensor parallelism splits each large matrix across several
devices so that every device stores and multiplies only a slice. In a column parallel
linear layer each device keeps some of the output columns; it computes its part of the
result with no communication at all. In a row parallel linear layer each device keeps
some of the input rows; every device computes a partial sum, and an all reduce adds the
partial sums together so that every device ends with the full answer.

The trick that makes this cheap is to pair the two kinds of layer. The first projection
of an attention block or a feed forward block is split by columns, the second by rows.
The activations between them never leave their device, and only one all reduce is needed
in the forward pass and one in the backward pass. Attention heads split naturally: each
device owns a few heads and computes their queries, keys and values on its own.

Data parallelism is the other common way to use many devices. Every device holds a full
copy of the model and reads a different slice of the batch. After the backward pass the
gradients are averaged across devices, so every copy takes the same step and the copies
stay identical. Tensor parallelism and data parallelism combine well: a group of devices
shares one copy of the model through tensor parallelism, and several such groups train
side by side on different data.

Memory can be saved further by sharding the optimizer state. Adam keeps two extra numbers
for every weight, a running mean of the gradient and a running mean of its square. When
each data parallel rank keeps only its own share of these numbers, the memory for the
optimizer shrinks in proportion to the number of ranks, and the full weights are
gathered again after each update.

Correctness matters more than speed. A parallel run should produce the same loss as a
run on a single device, up to the small differences that come from adding numbers in a
different order. The best way to be sure is to test it: start every rank from the same
seed, run one step with one device and one step with many, and compare the losses, the
gradients and the updated weights. When they agree, the parallel code is doing the same
arithmetic as the simple code, only spread across more hardware.

Good training code is also honest about failure. When a matrix does not divide evenly
across devices, it says so and names the layer and the size. When a checkpoint is
missing a weight, it lists the missing name instead of silently starting from zeros.
When the loss becomes infinite, it stops and reports the step. Clear errors save more
time than fast kernels, because the hardest bugs are the ones that fail quietly.
)corpus";
  return kText;
}

}  // namespace autotp::tools
