// Module registry: registration and name checks, dotted-name enumeration, state dicts,
// path lookup and replacement, modes, printing; ModuleList.
#include "core/module.h"

#include <map>

#include <algorithm>
#include <set>
#include <tuple>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/elementwise.h"

namespace autotp {

namespace {

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    parts.push_back(path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

std::string join_list(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

// Identity of a registered tensor: its autograd record when it has one (copies share it),
// otherwise its storage and geometry. Used to list tied tensors once.
using TensorKey = std::tuple<const void*, const void*, int64_t, Shape>;
TensorKey tensor_key(const Tensor& t) {
  if (t.autograd_meta()) return {t.autograd_meta().get(), nullptr, 0, {}};
  return {nullptr, t.storage().get(), t.offset(), t.shape()};
}

template <typename T>
auto find_entry(T& entries, const std::string& name) {
  return std::find_if(entries.begin(), entries.end(),
                      [&](const auto& e) { return e.name == name; });
}

}  // namespace

// ---- lifetime ------------------------------------------------------------------

Module::~Module() {
  for (auto& entry : children_) {
    if (entry.value && entry.value->parent_ == this) entry.value->parent_ = nullptr;
  }
}

// ---- registration -------------------------------------------------------------

std::string Module::path() const {
  std::vector<std::string> parts;
  for (const Module* m = this; m->parent_ != nullptr; m = m->parent_) {
    parts.push_back(m->name_in_parent_);
  }
  std::reverse(parts.begin(), parts.end());
  std::string out;
  for (const std::string& p : parts)
    out = join_name(out, p);
  return out;
}

std::string Module::describe() const {
  const std::string p = path();
  return p.empty() ? type_name() + " (root module)" : fmt::format("{} at '{}'", type_name(), p);
}

void Module::check_new_name(const std::string& name, const char* what) const {
  AUTOTP_CHECK(!name.empty(), "{}: empty name in {}", what, describe());
  AUTOTP_CHECK(name.find('.') == std::string::npos,
               "{}: name '{}' in {} contains '.' (dots separate path components; register a "
               "child module instead)",
               what, name, describe());
  const char* used_by = has_parameter(name) ? "a parameter"
                        : has_buffer(name)  ? "a buffer"
                        : has_child(name)   ? "a child module"
                                            : nullptr;
  AUTOTP_CHECK(used_by == nullptr, "{}: name '{}' is already used by {} of {}", what, name, used_by,
               describe());
}

void Module::check_tensor(const std::string& name, const Tensor& value, const char* what) const {
  AUTOTP_CHECK(value.defined(), "{}: tensor for '{}' in {} is undefined", what, name, describe());
  AUTOTP_CHECK(value.is_leaf(),
               "{}: tensor for '{}' in {} is the output of {}, not a leaf; detach() it first", what,
               name, describe(), value.grad_fn()->name());
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_new_name(name, "register_parameter");
  check_tensor(name, value, "register_parameter");
  if (is_floating(value.dtype())) value.set_requires_grad(true);
  parameters_.push_back({name, value});
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_new_name(name, "register_buffer");
  check_tensor(name, value, "register_buffer");
  buffers_.push_back({name, value});
  return value;
}

void Module::register_module_impl(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name, "register_module");
  AUTOTP_CHECK(module != nullptr, "register_module: module '{}' in {} is null", name, describe());
  for (const Module* m = this; m != nullptr; m = m->parent_) {
    AUTOTP_CHECK(m != module.get(),
                 "register_module: registering {} as '{}' in {} would make a cycle",
                 module->describe(), name, describe());
  }
  module->parent_ = this;
  module->name_in_parent_ = name;
  children_.push_back({name, std::move(module)});
}

// ---- direct access -------------------------------------------------------------

bool Module::has_parameter(const std::string& name) const {
  return find_entry(parameters_, name) != parameters_.end();
}
bool Module::has_buffer(const std::string& name) const {
  return find_entry(buffers_, name) != buffers_.end();
}
bool Module::has_child(const std::string& name) const {
  return find_entry(children_, name) != children_.end();
}

Tensor Module::parameter(const std::string& name) const {
  auto it = find_entry(parameters_, name);
  if (it == parameters_.end()) {
    std::vector<std::string> names;
    for (const auto& e : parameters_)
      names.push_back(e.name);
    AUTOTP_FAIL("{} has no parameter '{}' (parameters: {})", describe(), name,
                names.empty() ? "none" : join_list(names));
  }
  return it->value;
}

Tensor Module::buffer(const std::string& name) const {
  auto it = find_entry(buffers_, name);
  if (it == buffers_.end()) {
    std::vector<std::string> names;
    for (const auto& e : buffers_)
      names.push_back(e.name);
    AUTOTP_FAIL("{} has no buffer '{}' (buffers: {})", describe(), name,
                names.empty() ? "none" : join_list(names));
  }
  return it->value;
}

void Module::set_parameter(const std::string& name, Tensor value) {
  parameter(name);  // reports a missing name
  check_tensor(name, value, "set_parameter");
  if (is_floating(value.dtype())) value.set_requires_grad(true);
  find_entry(parameters_, name)->value = value;
}

void Module::set_buffer(const std::string& name, Tensor value) {
  buffer(name);
  check_tensor(name, value, "set_buffer");
  find_entry(buffers_, name)->value = value;
}

std::string Module::list_children() const {
  std::vector<std::string> names;
  for (const auto& e : children_)
    names.push_back(e.name);
  return names.empty() ? "none" : join_list(names);
}

std::shared_ptr<Module> Module::child_ptr(const std::string& name) const {
  auto it = find_entry(children_, name);
  AUTOTP_CHECK(it != children_.end(), "{} has no child module '{}' (children: {})", describe(),
               name, list_children());
  return it->value;
}

Module& Module::child(const std::string& name) const {
  return *child_ptr(name);
}

void Module::throw_wrong_child_type(const std::string& name, const Module& actual) const {
  AUTOTP_FAIL("child '{}' of {} is a {}, which does not provide the interface the caller needs",
              name, describe(), actual.type_name());
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  for (const auto& e : children_)
    out.emplace_back(e.name, e.value);
  return out;
}

// ---- enumeration -----------------------------------------------------------------

void Module::collect_tensors(bool parameters, const std::string& prefix,
                             std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& e : parameters ? parameters_ : buffers_) {
    out.emplace_back(join_name(prefix, e.name), e.value);
  }
  for (const auto& c : children_)
    c.value->collect_tensors(parameters, join_name(prefix, c.name), out);
}

void Module::collect_modules(
    const std::string& prefix,
    std::vector<std::pair<std::string, std::shared_ptr<Module>>>& out) const {
  for (const auto& c : children_) {
    const std::string name = join_name(prefix, c.name);
    out.emplace_back(name, c.value);
    c.value->collect_modules(name, out);
  }
}

namespace {
std::vector<std::pair<std::string, Tensor>> without_duplicates(
    std::vector<std::pair<std::string, Tensor>> all) {
  std::set<TensorKey> seen;
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& entry : all) {
    if (seen.insert(tensor_key(entry.second)).second) out.push_back(std::move(entry));
  }
  return out;
}
}  // namespace

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> all;
  collect_tensors(true, "", all);
  return without_duplicates(std::move(all));
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters())
    out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> all;
  collect_tensors(false, "", all);
  return without_duplicates(std::move(all));
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules() const {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> all;
  collect_modules("", all);
  std::set<const Module*> seen;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  for (auto& entry : all) {
    if (seen.insert(entry.second.get()).second) out.push_back(std::move(entry));
  }
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : named_parameters())
    n += t.numel();
  return n;
}

// ---- state dicts ----------------------------------------------------------------

StateDict Module::state_dict() const {
  std::vector<std::pair<std::string, Tensor>> all;
  collect_tensors(true, "", all);
  collect_tensors(false, "", all);
  StateDict out;
  for (const auto& [name, t] : all)
    out.emplace(name, t.detach());
  return out;
}

LoadStateDictResult Module::load_state_dict(const StateDict& state, bool strict) {
  std::vector<std::pair<std::string, Tensor>> targets;
  collect_tensors(true, "", targets);
  collect_tensors(false, "", targets);

  LoadStateDictResult result;
  std::vector<std::string> mismatches;
  std::set<std::string> known;
  for (const auto& [name, dst] : targets) {
    known.insert(name);
    auto it = state.find(name);
    if (it == state.end()) {
      result.missing_keys.push_back(name);
      continue;
    }
    const Tensor& src = it->second;
    if (!src.defined()) {
      mismatches.push_back(fmt::format("'{}': the dict's tensor is undefined", name));
    } else if (src.shape() != dst.shape()) {
      mismatches.push_back(fmt::format("'{}': shape mismatch: the module has {}, the dict has {}",
                                       name, shape_str(dst.shape()), shape_str(src.shape())));
    } else if (src.dtype() != dst.dtype()) {
      mismatches.push_back(fmt::format("'{}': dtype mismatch: the module has {}, the dict has {}",
                                       name, dtype_name(dst.dtype()), dtype_name(src.dtype())));
    }
  }
  for (const auto& [name, t] : state) {
    if (known.count(name) == 0) result.unexpected_keys.push_back(name);
  }

  std::string problems;
  for (const std::string& m : mismatches)
    problems += "\n  " + m;
  if (strict && !result.missing_keys.empty()) {
    problems += fmt::format("\n  missing keys ({}): {}", result.missing_keys.size(),
                            join_list(result.missing_keys));
  }
  if (strict && !result.unexpected_keys.empty()) {
    problems += fmt::format("\n  unexpected keys ({}): {}", result.unexpected_keys.size(),
                            join_list(result.unexpected_keys));
  }
  AUTOTP_CHECK(problems.empty(), "load_state_dict into {}: nothing was loaded:{}", describe(),
               problems);

  NoGradGuard no_grad;
  for (const auto& [name, dst] : targets) {
    auto it = state.find(name);
    if (it != state.end()) dst.copy_(it->second);
  }
  return result;
}

// ---- paths --------------------------------------------------------------------------

std::shared_ptr<Module> Module::get_submodule(const std::string& path) const {
  AUTOTP_CHECK(!path.empty(), "get_submodule: empty path in {} (a module is not its own submodule)",
               describe());
  const Module* current = this;
  std::shared_ptr<Module> found;
  std::string walked;
  for (const std::string& part : split_path(path)) {
    auto it = find_entry(current->children_, part);
    AUTOTP_CHECK(
        it != current->children_.end(), "no module '{}' in {}: {} has no child '{}' (children: {})",
        path, describe(),
        walked.empty() ? std::string("it") : fmt::format("'{}' ({})", walked, current->type_name()),
        part, current->list_children());
    found = it->value;
    current = found.get();
    walked = join_name(walked, part);
  }
  return found;
}

std::shared_ptr<Module> Module::replace_module(const std::string& path,
                                               std::shared_ptr<Module> module) {
  AUTOTP_CHECK(module != nullptr, "replace_module: the replacement for '{}' in {} is null", path,
               describe());
  const size_t dot = path.rfind('.');
  std::shared_ptr<Module> parent_holder;
  Module* parent = this;
  if (dot != std::string::npos) {
    parent_holder = get_submodule(path.substr(0, dot));
    parent = parent_holder.get();
  }
  const std::string name = dot == std::string::npos ? path : path.substr(dot + 1);
  AUTOTP_CHECK(!name.empty(), "replace_module: path '{}' in {} ends in an empty name", path,
               describe());
  auto it = find_entry(parent->children_, name);
  AUTOTP_CHECK(it != parent->children_.end(),
               "replace_module: no module '{}' in {}: {} has no child '{}' (children: {})", path,
               describe(), parent->describe(), name, parent->list_children());
  for (const Module* m = parent; m != nullptr; m = m->parent_) {
    AUTOTP_CHECK(m != module.get(), "replace_module: putting {} at '{}' would make a cycle",
                 module->describe(), path);
  }
  std::shared_ptr<Module> old = std::move(it->value);
  if (old->parent_ == parent) old->parent_ = nullptr;
  module->train(old->is_training());
  module->parent_ = parent;
  module->name_in_parent_ = name;
  it->value = std::move(module);
  return old;
}

// ---- modes and gradients -------------------------------------------------------------------

void Module::train(bool on) {
  training_ = on;
  for (auto& c : children_)
    c.value->train(on);
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters())
    t.zero_grad();
}

// ---- printing -------------------------------------------------------------------------------

void Module::print_tree(std::string& out, int indent) const {
  // Appended piecewise: GCC 12's -Wrestrict misfires on chained string temporaries at -O3.
  out += type_name();
  out += '(';
  out += extra_repr();
  if (children_.empty()) {
    out += ")";
    return;
  }
  const std::string pad(static_cast<size_t>(indent + 2), ' ');
  for (const auto& c : children_) {
    out += '\n';
    out += pad;
    out += '(';
    out += c.name;
    out += "): ";
    c.value->print_tree(out, indent + 2);
  }
  out += '\n';
  out.append(static_cast<size_t>(indent), ' ');
  out += ')';
}

void Module::to(Device device, std::optional<DType> dtype) {
  // One converted tensor per source storage+view, so tied weights stay tied.
  std::map<const void*, Tensor> converted;
  auto convert = [&](const Tensor& t, bool parameter) {
    const void* key = t.defined() ? t.raw_data() : nullptr;
    if (auto it = converted.find(key); key != nullptr && it != converted.end()) return it->second;
    Tensor moved = t.detach().to(device);
    if (dtype && is_floating(t.dtype())) moved = moved.to(*dtype);
    if (moved.shares_storage(t)) moved = moved.clone();  // never alias the old leaf
    moved = moved.detach();
    if (parameter && t.requires_grad()) moved.set_requires_grad(true);
    converted[key] = moved;
    return moved;
  };
  std::vector<Module*> modules{this};
  for (const auto& [path, m] : named_modules())
    modules.push_back(m.get());
  for (Module* m : modules) {
    for (auto& entry : m->parameters_)
      entry.value = convert(entry.value, true);
    for (auto& entry : m->buffers_)
      entry.value = convert(entry.value, false);
  }
}

std::string Module::to_string() const {
  std::string out;
  print_tree(out, 0);
  return out;
}

// ---- ModuleList ---------------------------------------------------------------------------

ModuleList::ModuleList(std::vector<std::shared_ptr<Module>> modules) {
  for (auto& m : modules)
    push_back(std::move(m));
}

void ModuleList::push_back(std::shared_ptr<Module> module) {
  register_module(std::to_string(size_), std::move(module));
  ++size_;
}

void ModuleList::check_index(int64_t index) const {
  AUTOTP_CHECK(
      index >= 0 && index < size_, "index {} out of range for {} of size {}", index,
      path().empty() ? std::string("a ModuleList") : fmt::format("ModuleList '{}'", path()), size_);
}

Module& ModuleList::operator[](int64_t index) const {
  return *ptr(index);
}

std::shared_ptr<Module> ModuleList::ptr(int64_t index) const {
  check_index(index);
  return child_ptr(std::to_string(index));
}

Tensor UnaryModule::forward_add(const Tensor& input, const Tensor& addend) {
  return ops::add(addend, forward(input));
}

}  // namespace autotp
