// Reader of the golden files written by tools/golden/make_llama_golden.py: tensors.txt +
// tensors.bin (raw little-endian tensors) and config.txt (flattened config.json).
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"
#include "models/model_config.h"

namespace autotp::testing {

// The folder holding the golden model folders (tests/data/golden in the source tree).
std::string golden_dir();

struct GoldenModel {
  std::string name;
  ModelConfigMap config;                  // config.txt
  std::map<std::string, Tensor> tensors;  // tensors.txt/.bin by name ("logits", "param/...")

  // The tensor `name`; a missing name fails with the list of names.
  const Tensor& at(const std::string& name) const;
  // Tensors under "<prefix>/" by the rest of their name ("param" -> HF parameter names).
  std::map<std::string, Tensor> with_prefix(const std::string& prefix) const;
};

// Reads golden_dir()/<name>/ (errors name the file and line).
GoldenModel read_golden(const std::string& name);

}  // namespace autotp::testing
