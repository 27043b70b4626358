// Subcommand table for the autotp command line.
#include "tools/commands.h"

#include <cstdio>
#include <string>
#include <vector>

#include "tools/demo.h"
#include "tools/plan_command.h"

namespace autotp::tools {

namespace {
void print_usage() {
  std::printf(
      "usage: autotp <command> [options]\n"
      "commands:\n"
      "  demo     train a small byte-level language model with the autograd engine\n"
      "  version  print the version\n");
}
}  // namespace

int run_command_line(int argc, char** argv) {
  if (argc < 2) {
    print_usage();
    return 1;
  }
  const std::string command = argv[1];
  if (command == "demo") {
    return run_demo(std::vector<std::string>(argv + 2, argv + argc));
  }
  if (command == "plan") {
    return run_plan_command(std::vector<std::string>(argv + 2, argv + argc));
  }
  if (command == "version") {
    std::printf("autotp 0.1.0\n");
    return 0;
  }
  if (command == "help" || command == "--help" || command == "-h") {
    print_usage();
    return 0;
  }
  AUTOTP_FAIL("unknown command '{}'; run 'autotp help' for the list", command);
}

}  // namespace autotp::tools
