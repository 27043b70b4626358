// The autotp command: `autotp <subcommand> [args]`. Only main() catches errors and exits.
#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "tools/commands.h"

int main(int argc, char** argv) {
  try {
    return autotp::tools::run_command_line(argc, argv);
  } catch (const autotp::Error& e) {
    std::fprintf(stderr, "autotp: error: %s\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    // A host allocation too large for the machine (a batch, sequence or model size beyond its
    // memory): the sizes are in the config's summary, printed before the run started.
    std::fprintf(stderr,
                 "autotp: error: out of host memory (std::bad_alloc): the model, batch or data "
                 "sizes need more memory than this machine has (`autotp plan CONFIG.yaml` "
                 "estimates the model's share)\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "autotp: %s\n", e.what());
    return 3;
  }
}
