// Subcommand dispatch for the autotp command line.
#pragma once

#include "core/error.h"

namespace autotp::tools {

// Parses argv and runs the subcommand; returns the process exit code.
int run_command_line(int argc, char** argv);

}  // namespace autotp::tools
