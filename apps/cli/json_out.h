// JSON text for output. Every string medstream prints as JSON can hold bytes from outside (a
// dataset name, a stored value, an alias, a file name) that are not valid UTF-8; nlohmann's
// default dump() throws on them (type_error 316), which would abort the command. Here invalid
// bytes become U+FFFD instead: the output stays valid JSON and the command goes on.
#pragma once

#include <string>

namespace medstream::cli {

template <class Json>
std::string DumpJson(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

}  // namespace medstream::cli
