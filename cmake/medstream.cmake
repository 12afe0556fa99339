# Helpers shared by every module's CMakeLists.txt.

set(MEDSTREAM_WARNINGS -Wall -Wextra -Werror -Wshadow -Wnon-virtual-dtor -Wcast-align
    -Wimplicit-fallthrough)

# medstream_module(NAME SOURCES ... DEPS ...): the library target medstream_NAME, with the repo
# root as include root so headers are included as "module/header.h".
function(medstream_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  if(ARG_SOURCES)
    add_library(medstream_${name} STATIC ${ARG_SOURCES})
    target_include_directories(medstream_${name} PUBLIC ${PROJECT_SOURCE_DIR})
    target_compile_options(medstream_${name} PRIVATE ${MEDSTREAM_WARNINGS})
    target_link_libraries(medstream_${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  else()
    add_library(medstream_${name} INTERFACE)
    target_include_directories(medstream_${name} INTERFACE ${PROJECT_SOURCE_DIR})
    target_link_libraries(medstream_${name} INTERFACE ${ARG_DEPS})
  endif()
  add_library(medstream::${name} ALIAS medstream_${name})
endfunction()

# medstream_test(NAME SOURCES ... DEPS ...): a GoogleTest executable registered with CTest.
function(medstream_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})  # tests/ helpers
  target_compile_options(${name} PRIVATE ${MEDSTREAM_WARNINGS})
  target_compile_definitions(${name} PRIVATE
    MEDSTREAM_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data"
    MEDSTREAM_SHARED_DATA_DIR="${PROJECT_SOURCE_DIR}/../shared/data")
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${ARG_LABELS}")
endfunction()
