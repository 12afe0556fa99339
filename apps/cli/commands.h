// cli: the `medstream` executable. Each subcommand registers itself on the top-level app; the
// callback stores the process exit code. Commands print errors as "medstream CMD: error: ..." on
// stderr and return non-zero; results go to stdout.
#pragma once

#include <CLI/CLI.hpp>

namespace medstream::cli {

// The simulated platform directory: $MEDSTREAM_PLATFORM, else ~/.medstream/platform.
std::string DefaultPlatformDir();

void RegisterHrvCommand(CLI::App& app, int* exit_code);
void RegisterEnclaveCommands(CLI::App& app, int* exit_code);
void RegisterServerCommand(CLI::App& app, int* exit_code);
void RegisterSensorCommand(CLI::App& app, int* exit_code);
void RegisterDemoCommand(CLI::App& app, int* exit_code);
void RegisterGatewayCommand(CLI::App& app, int* exit_code);
void RegisterBenchCommand(CLI::App& app, int* exit_code);
void RegisterLakeCommand(CLI::App& app, int* exit_code);
void RegisterBrokerCommand(CLI::App& app, int* exit_code);
void RegisterEcgCommand(CLI::App& app, int* exit_code);
void RegisterExportCommand(CLI::App& app, int* exit_code);
void RegisterReportCommand(CLI::App& app, int* exit_code);
void RegisterDashboardCommand(CLI::App& app, int* exit_code);

}  // namespace medstream::cli
