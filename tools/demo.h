// `autotp demo`: trains a small byte-level MLP language model on an embedded English text
// with the autograd engine, Module layers and a hand-written Adam, printing the loss.
#pragma once

#include <string>
#include <vector>

namespace autotp::tools {

extern const char* const kDemoUsage;

// Runs the demo with the arguments after "demo" ([--steps N] [--seed S] [--check]); returns
// the exit code (1 when --check finds that the loss did not fall enough).
int run_demo(const std::vector<std::string>& args);

}  // namespace autotp::tools
