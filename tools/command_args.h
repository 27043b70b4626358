// Small helpers shared by the subcommands' argument parsers: "--opt VALUE" / "--opt=VALUE"
// and integer values, each failing with one message that ends in the usage line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace autotp::tools {

// The number of processes mpirun started for this job, from the variables Open MPI and
// MPICH/PMI set in each; 1 without a launcher.
int64_t launched_world_size();

// For the commands that run one process (eval, export, bench, bench-ops): an error when a
// launcher started several, each of which would repeat the whole command (and write the same
// files, or share one GPU).
void check_single_process(const char* command);

// Walks args; at position i, take_value("--out") matches "--out VALUE" (advancing past the
// value) or "--out=VALUE", returning the value; nullopt when args[i] is another argument.
class ArgWalker {
 public:
  ArgWalker(const std::vector<std::string>& args, std::string command, std::string usage)
      : args_(args), command_(std::move(command)), usage_(std::move(usage)) {}

  bool done() const { return i_ >= args_.size(); }
  const std::string& current() const { return args_[i_]; }
  bool has_next() const { return i_ + 1 < args_.size(); }
  const std::string& next() const { return args_[i_ + 1]; }
  void advance() { ++i_; }

  std::optional<std::string> take_value(const std::string& option);
  int64_t parse_int(const std::string& option, const std::string& value, int64_t min) const;
  [[noreturn]] void fail(const std::string& message) const;

 private:
  const std::vector<std::string>& args_;
  size_t i_ = 0;
  std::string command_;
  std::string usage_;
};

}  // namespace autotp::tools
