// cli: the `medstream` executable. Each subcommand registers itself on the top-level app; the
// callback stores the process exit code. Commands end on an error through ExitWithError alone:
// "medstream CMD: error (CODE IN WORDS): message" on stderr and the exit status of the error's code
// (ExitStatus, common/base/result.h); results go to stdout.
#pragma once

#include <CLI/CLI.hpp>
#include <string_view>

#include "common/base/result.h"

namespace medstream::cli {

// The exit status of `demo` and `bench --e2e` when the run completed but beats were lost or
// duplicated (apart from the ExitStatus codes).
inline constexpr int kExitDataLost = 20;

// Prints the error and returns the exit status its code maps to (ExitStatus).
int ExitWithError(std::string_view command, const Error& error);
// A mistake in the command line that the command found itself (CLI11 finds the rest).
int ExitWithError(std::string_view command, std::string_view usage_error);

// Checks of a number option. CLI11's Range, PositiveNumber and NonNegativeNumber let "nan" through
// (every comparison with NaN is false), and their limits print as 300 digits; these refuse NaN,
// infinities and text that is not wholly a number, and say the limits as they were written.
CLI::Validator FiniteRange(double min, double max);
CLI::Validator Positive();     // > 0 and finite
CLI::Validator NonNegative();  // >= 0 and finite

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
void RegisterClusterCommands(CLI::App& app, int* exit_code);

}  // namespace medstream::cli
