// The autotp command: `autotp <subcommand> [args]`. Only main() catches errors and exits.
#include <cstdio>
#include <exception>
#include <string>

#include "tools/commands.h"

int main(int argc, char** argv) {
  try {
    return autotp::tools::run_command_line(argc, argv);
  } catch (const autotp::Error& e) {
    std::fprintf(stderr, "autotp: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "autotp: %s\n", e.what());
    return 3;
  }
}
