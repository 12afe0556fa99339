// base: the error model shared by every medstream module.
//
// Functions that can fail return Result<T> (a std::expected) or Status (Result<void>). An Error
// carries a coarse code, for callers that branch on the kind of failure, and a message written for
// the person who has to act on it ("mitdb.csv line 12: 'abc' is not a number"), not for a debugger.
// Exceptions are not used across module boundaries; code that calls a throwing library catches at
// its edge and converts.
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace medstream {

class Error {
 public:
  enum class Code {
    kInvalidArgument,  // the caller passed something malformed
    kNotFound,         // a file, column, user ... does not exist
    kIo,               // the operating system refused (open, read, write)
    kCorrupt,          // data failed validation (parse error, bad tag, bad signature)
    kFailedPrecondition,
    kInternal,
    kResourceExhausted,  // a size, count or depth over its stated limit
    kDeadlineExceeded,   // a call ran past its time budget (and was stopped)
    kAlreadyExists,      // done before: a replayed batch, a sequence number already processed
    kPermissionDenied,   // a peer refused our identity or an action it is not allowed
    kRolledBack,         // stored state older than what was committed (a monotonic counter says so)
  };
  static constexpr Code kLastCode = Code::kRolledBack;

  Error(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // Prefixes context, so errors read outermost-first: "loading x.csv: line 3: ...".
  Error&& With(std::string_view context) && {
    message_ = std::string(context) + ": " + message_;
    return std::move(*this);
  }

 private:
  Code code_;
  std::string message_;
};

// The code's name ("kNotFound"), for logs and test failures.
constexpr std::string_view CodeName(Error::Code code) {
  switch (code) {
    case Error::Code::kInvalidArgument:
      return "kInvalidArgument";
    case Error::Code::kNotFound:
      return "kNotFound";
    case Error::Code::kIo:
      return "kIo";
    case Error::Code::kCorrupt:
      return "kCorrupt";
    case Error::Code::kFailedPrecondition:
      return "kFailedPrecondition";
    case Error::Code::kInternal:
      return "kInternal";
    case Error::Code::kResourceExhausted:
      return "kResourceExhausted";
    case Error::Code::kDeadlineExceeded:
      return "kDeadlineExceeded";
    case Error::Code::kAlreadyExists:
      return "kAlreadyExists";
    case Error::Code::kPermissionDenied:
      return "kPermissionDenied";
    case Error::Code::kRolledBack:
      return "kRolledBack";
  }
  return "unknown code";
}
// The process exit status of a command-line tool that ends on an error of this code, so that
// scripts and tests branch on the status, never on the wording (docs/cli.md lists them). 1 is
// kInternal; CLI11's own usage errors keep CLI11's statuses (100 and up).
constexpr int ExitStatus(Error::Code code) {
  switch (code) {
    case Error::Code::kInternal:
      return 1;
    case Error::Code::kInvalidArgument:
      return 2;
    case Error::Code::kNotFound:
      return 3;
    case Error::Code::kIo:
      return 4;
    case Error::Code::kCorrupt:
      return 5;
    case Error::Code::kFailedPrecondition:
      return 6;
    case Error::Code::kResourceExhausted:
      return 7;
    case Error::Code::kDeadlineExceeded:
      return 8;
    case Error::Code::kAlreadyExists:
      return 9;
    case Error::Code::kPermissionDenied:
      return 10;
    case Error::Code::kRolledBack:
      return 11;
  }
  return 1;
}

// Text from an untrusted peer (a file name, a reason) for a log line or a file of ours, at most
// `max` bytes: control characters become '?', so it cannot drive a terminal or split a line.
inline std::string Printable(std::string_view text, size_t max = 1000) {
  std::string out(text.substr(0, max));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return out;
}

// The code in words for people ("permission denied"), printed beside the message.
constexpr std::string_view CodeWords(Error::Code code) {
  switch (code) {
    case Error::Code::kInvalidArgument:
      return "invalid argument";
    case Error::Code::kNotFound:
      return "not found";
    case Error::Code::kIo:
      return "I/O";
    case Error::Code::kCorrupt:
      return "corrupt";
    case Error::Code::kFailedPrecondition:
      return "failed precondition";
    case Error::Code::kInternal:
      return "internal";
    case Error::Code::kResourceExhausted:
      return "over a limit";
    case Error::Code::kDeadlineExceeded:
      return "deadline exceeded";
    case Error::Code::kAlreadyExists:
      return "already exists";
    case Error::Code::kPermissionDenied:
      return "permission denied";
    case Error::Code::kRolledBack:
      return "rolled back";
  }
  return "unknown";
}

template <class Stream>
requires requires(Stream& s, std::string_view v) {
  s << v;
}
Stream& operator<<(Stream& out, Error::Code code) {
  out << CodeName(code);
  return out;
}

template <class T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> Fail(Error::Code code, std::string message) {
  return std::unexpected<Error>(Error(code, std::move(message)));
}
inline std::unexpected<Error> InvalidArgument(std::string message) {
  return Fail(Error::Code::kInvalidArgument, std::move(message));
}
inline std::unexpected<Error> Corrupt(std::string message) {
  return Fail(Error::Code::kCorrupt, std::move(message));
}
inline std::unexpected<Error> IoError(std::string message) {
  return Fail(Error::Code::kIo, std::move(message));
}
inline std::unexpected<Error> NotFound(std::string message) {
  return Fail(Error::Code::kNotFound, std::move(message));
}
inline std::unexpected<Error> ResourceExhausted(std::string message) {
  return Fail(Error::Code::kResourceExhausted, std::move(message));
}

}  // namespace medstream
