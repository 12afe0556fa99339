#include <cstdio>
#include <cstdlib>
#include <string>

#include "apps/cli/commands.h"
#include "common/base/memory.h"

#ifndef MEDSTREAM_VERSION
#define MEDSTREAM_VERSION "0.0.0"
#endif

namespace medstream::cli {

std::string DefaultPlatformDir() {
  if (const char* env = std::getenv("MEDSTREAM_PLATFORM")) return env;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.medstream/platform";
}

}  // namespace medstream::cli

int main(int argc, char** argv) {
  medstream::TuneAllocatorForLargeBuffers();
  CLI::App app{
      "medstream: confidential processing of medical streams (heart-rate variability) inside a "
      "trusted execution environment.",
      "medstream"};
  app.set_version_flag("--version", std::string("medstream ") + MEDSTREAM_VERSION);
  app.require_subcommand(1);
  app.footer("Run 'medstream COMMAND --help' for a command's options.");
  int exit_code = 0;
  medstream::cli::RegisterHrvCommand(app, &exit_code);
  medstream::cli::RegisterEnclaveCommands(app, &exit_code);
  medstream::cli::RegisterServerCommand(app, &exit_code);
  medstream::cli::RegisterSensorCommand(app, &exit_code);
  medstream::cli::RegisterGatewayCommand(app, &exit_code);
  medstream::cli::RegisterDemoCommand(app, &exit_code);
  medstream::cli::RegisterBenchCommand(app, &exit_code);
  medstream::cli::RegisterLakeCommand(app, &exit_code);
  medstream::cli::RegisterBrokerCommand(app, &exit_code);
  medstream::cli::RegisterEcgCommand(app, &exit_code);
  medstream::cli::RegisterExportCommand(app, &exit_code);
  medstream::cli::RegisterReportCommand(app, &exit_code);
  medstream::cli::RegisterDashboardCommand(app, &exit_code);
  medstream::cli::RegisterClusterCommands(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version end here too, with 0. A mistake in the command line (an unknown
    // option, a value out of its range) ends, after CLI11's message, with the status of
    // kInvalidArgument, as the mistakes the commands find themselves do (commands.h), not with
    // CLI11's own numbers (105, 106, ...).
    return app.exit(e) == 0 ? 0 : medstream::ExitStatus(medstream::Error::Code::kInvalidArgument);
  }
  return exit_code;
}
