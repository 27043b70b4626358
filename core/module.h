// Module: the registry of a model's parameters, buffers and child modules under Hugging Face
// dotted names ("model.layers.3.self_attn.q_proj.weight"), plus ModuleList and UnaryModule.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace autotp {

// Parameters and buffers by dotted name. Values returned by state_dict() are detached aliases
// of the module's tensors (clone() them to take a snapshot).
using StateDict = std::map<std::string, Tensor>;

// What a non-strict load_state_dict skipped (a strict load throws instead).
struct LoadStateDictResult {
  std::vector<std::string> missing_keys;     // in the module, absent from the dict
  std::vector<std::string> unexpected_keys;  // in the dict, absent from the module
};

// A node of the model tree. Children are held by std::shared_ptr (a root may live anywhere);
// neither copyable nor movable, so a module's address is stable.
//
// THE REGISTRY PATTERN (read before writing a module)
// --------------------------------------------------
// The registry is the only place a module keeps its parameters and children. A subclass
// registers them in its constructor and reaches them again *by name* on every use:
//
//   class Mlp : public UnaryModule {
//    public:
//     Mlp(int64_t hidden, int64_t inner) {
//       register_module("up_proj", std::make_shared<Linear>(hidden, inner));
//       register_module("down_proj", std::make_shared<Linear>(inner, hidden));
//     }
//     std::string type_name() const override { return "Mlp"; }
//     // Accessors look the child up in the registry each call; never store the pointer.
//     UnaryModule& up_proj() const { return child_as<UnaryModule>("up_proj"); }
//     UnaryModule& down_proj() const { return child_as<UnaryModule>("down_proj"); }
//     Tensor forward(const Tensor& x) override {  // x [..., hidden]
//       return down_proj().forward(ops::gelu(up_proj().forward(x)));
//     }
//   };
//
// replace_module("up_proj", parallel_layer) then swaps the registry entry, and forward(),
// named_parameters(), state_dict() and the optimizer all see the new layer: nothing else
// holds the old one. Rules that keep this true:
//   * Never cache a child pointer/reference or a parameter Tensor in a member; write
//     accessors that call child_as<T>(name) / parameter(name) instead.
//   * Call a replaceable child through the most general type it must satisfy (usually
//     UnaryModule), not its concrete class, so a replacement of another class still fits.
//   * Keep plain configuration (sizes, eps, flags) in ordinary members.
// register_module() returns the child for convenience inside the constructor only.
//
// Names: non-empty, no '.', unique across a module's parameters, buffers and children.
// Enumeration (named_parameters/buffers/modules, state_dict) walks the tree depth-first in
// registration order: a module's own parameters (or buffers) before its children's.
class Module {
 public:
  Module() = default;
  virtual ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Short class name shown in messages and to_string(): "Linear", "ModuleList", ...
  virtual std::string type_name() const = 0;
  // Extra text inside to_string()'s parentheses: "in_features=3, out_features=5, bias=true".
  virtual std::string extra_repr() const { return ""; }

  // ---- registration (normally in the constructor) -------------------------------------
  // Registers a leaf tensor as a trainable parameter; floating tensors get requires_grad.
  // Returns the registered tensor (sharing data and autograd state with the registry's).
  Tensor register_parameter(const std::string& name, Tensor value);
  // Registers a tensor that is state but not trained (e.g. rotary tables, running stats).
  Tensor register_buffer(const std::string& name, Tensor value);
  // Registers a child module; returns it (typed) for use inside the constructor.
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    register_module_impl(name, module);
    return module;
  }

  // ---- direct access by local name -----------------------------------------------------
  bool has_parameter(const std::string& name) const;
  bool has_buffer(const std::string& name) const;
  bool has_child(const std::string& name) const;
  // The parameter/buffer registered as `name` here; an error names the module and what exists.
  Tensor parameter(const std::string& name) const;
  Tensor buffer(const std::string& name) const;
  // Swaps the tensor registered under an existing name (same rules as registration). Shape
  // and dtype may change: use it to tie weights or to substitute a shard.
  void set_parameter(const std::string& name, Tensor value);
  void set_buffer(const std::string& name, Tensor value);
  // The direct child `name` (an error names the module and lists its children).
  Module& child(const std::string& name) const;
  std::shared_ptr<Module> child_ptr(const std::string& name) const;
  // The direct child `name` as an M; an error names the child's actual type when it is not.
  template <typename M>
  M& child_as(const std::string& name) const {
    Module& c = child(name);
    M* typed = dynamic_cast<M*>(&c);
    if (typed == nullptr) throw_wrong_child_type(name, c);
    return *typed;
  }

  // (name, module) of the direct children, in registration order.
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;

  // ---- the whole tree ------------------------------------------------------------------
  // (dotted name, tensor) of every parameter below and including this module; a tensor
  // registered under several names (tied weights) appears once, under its first name.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  // (dotted path, module) of every descendant (not this module itself), pre-order; a module
  // reachable by several paths appears once.
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules() const;
  // Elements over all (deduplicated) parameters.
  int64_t num_parameters() const;

  // Every parameter and buffer by dotted name (tied tensors under each of their names).
  StateDict state_dict() const;
  // Copies values in place (no autograd). Every matching key must agree in shape and dtype;
  // with `strict`, missing and unexpected keys are reported together in one error. Nothing
  // is copied unless the whole dict passes the checks.
  LoadStateDictResult load_state_dict(const StateDict& state, bool strict = true);

  // ---- paths ---------------------------------------------------------------------------
  // The descendant at dotted `path` ("layers.3.mlp"); an error names the first missing part.
  std::shared_ptr<Module> get_submodule(const std::string& path) const;
  // Replaces the descendant at `path` (which must exist) with `module`, the one way to swap
  // a layer. Returns the module that was there.
  std::shared_ptr<Module> replace_module(const std::string& path, std::shared_ptr<Module> module);

  // ---- modes and gradients -----------------------------------------------------------------
  // Sets training mode on this module and every descendant.
  // Moves (and optionally converts) every parameter and buffer of the tree to `device`,
  // keeping requires_grad and tied weights tied (a tensor registered under several names
  // stays one tensor). Gradients are dropped. Parameters become new leaves.
  void to(Device device, std::optional<DType> dtype = std::nullopt);

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Drops the accumulated gradient of every parameter.
  void zero_grad();

  // ---- printing ------------------------------------------------------------------------------
  // An indented tree: "Mlp(\n  (up_proj): Linear(in_features=3, ...)\n  ...\n)".
  std::string to_string() const;
  // This module's dotted path from the topmost module that registered it ("" for a root).
  std::string path() const;
  // For messages: "Linear at 'model.lm_head'" or "Linear (root module)".
  std::string describe() const;

 private:
  template <typename T>
  struct Entry {
    std::string name;
    T value;
  };

  void register_module_impl(const std::string& name, std::shared_ptr<Module> module);
  // Checks a new name: non-empty, no '.', not yet used here.
  void check_new_name(const std::string& name, const char* what) const;
  void check_tensor(const std::string& name, const Tensor& value, const char* what) const;
  std::string list_children() const;
  [[noreturn]] void throw_wrong_child_type(const std::string& name, const Module& actual) const;
  void collect_modules(const std::string& prefix,
                       std::vector<std::pair<std::string, std::shared_ptr<Module>>>& out) const;
  // (dotted name, tensor) of every parameter (or buffer), duplicates included.
  void collect_tensors(bool parameters, const std::string& prefix,
                       std::vector<std::pair<std::string, Tensor>>& out) const;
  void print_tree(std::string& out, int indent) const;

  std::vector<Entry<Tensor>> parameters_;                 // registration order
  std::vector<Entry<Tensor>> buffers_;                    // registration order
  std::vector<Entry<std::shared_ptr<Module>>> children_;  // registration order
  bool training_ = true;
  // The module that last registered this one, and the name it used (for paths in messages);
  // cleared when that parent is destroyed or replaces this module.
  Module* parent_ = nullptr;
  std::string name_in_parent_;
};

// A module that maps one tensor to one tensor (Linear, Embedding, norms, MLPs). Parents call
// replaceable children through this interface, so a swapped-in layer of another class
// (e.g. a column-parallel Linear) is used without the parent knowing its type.
class UnaryModule : public Module {
 public:
  virtual Tensor forward(const Tensor& input) = 0;
  // addend + forward(input): a residual connection around this module. The default adds
  // after forward(); a module whose last op can take the sum in (Linear: the GEMM's C input)
  // overrides it, saving a pass over the activations. Both round the sum once more or less,
  // nothing else differs.
  virtual Tensor forward_add(const Tensor& input, const Tensor& addend);
};

// An indexed list of child modules named "0", "1", ... (HF's `layers.3`).
class ModuleList : public Module {
 public:
  ModuleList() = default;
  explicit ModuleList(std::vector<std::shared_ptr<Module>> modules);
  std::string type_name() const override { return "ModuleList"; }

  // Appends `module` under the name of its index (add children only this way).
  void push_back(std::shared_ptr<Module> module);
  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // The child at `index` (looked up in the registry, so replacements are seen).
  Module& operator[](int64_t index) const;
  std::shared_ptr<Module> ptr(int64_t index) const;
  // The child at `index` as an M (an error names its actual type when it is not).
  template <typename M>
  M& at(int64_t index) const {
    check_index(index);
    return child_as<M>(std::to_string(index));
  }

 private:
  void check_index(int64_t index) const;
  int64_t size_ = 0;
};

}  // namespace autotp
