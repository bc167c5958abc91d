# Small helpers in the spirit of abseil's AbseilHelpers.cmake: one call per
# library, test or binary, with warnings-as-errors on the project's own code.

set(TINYFED_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wcast-align -Wunused -Woverloaded-virtual -Werror)
# GCC 12 at -O3 reports std::string concatenation in libstdc++ as an
# overlapping memcpy (GCC bug 105329, a false positive).
# Clang checks the ABSL_GUARDED_BY annotations (the fuzz build in CI uses clang).
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  list(APPEND TINYFED_WARNINGS -Wthread-safety)
endif()
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  list(APPEND TINYFED_WARNINGS -Wno-restrict)
endif()

# Public headers (include/) for every target; a part's own private headers
# ("models/internal/graph.h", "aggregator/testing/...") only for the targets
# that part's CMakeLists.txt defines: each sees a directory holding a link to
# its own part alone, so including another part's private header does not
# compile (tests/include_boundary_check.cc).
function(tinyfed_target_defaults target)
  target_compile_options(${target} PRIVATE ${TINYFED_WARNINGS})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  file(RELATIVE_PATH relative ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  string(REGEX REPLACE "/.*" "" part "${relative}")
  if(part STREQUAL "")
    return()
  endif()
  set(root ${PROJECT_BINARY_DIR}/part-include/${part})
  if(NOT EXISTS ${root}/${part})
    file(MAKE_DIRECTORY ${root})
    file(CREATE_LINK ${PROJECT_SOURCE_DIR}/${part} ${root}/${part} SYMBOLIC)
  endif()
  target_include_directories(${target} PRIVATE $<BUILD_INTERFACE:${root}>)
endfunction()

# A part's testing helpers ("models/testing/tiny_classifier.h") for the tests
# of other parts that link `target`.
function(tinyfed_testing_headers target)
  file(RELATIVE_PATH part ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  set(root ${PROJECT_BINARY_DIR}/testing-include/${part})
  if(NOT EXISTS ${root}/${part}/testing)
    file(MAKE_DIRECTORY ${root}/${part})
    file(CREATE_LINK ${CMAKE_CURRENT_SOURCE_DIR}/testing ${root}/${part}/testing SYMBOLIC)
  endif()
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "INTERFACE_LIBRARY")
    target_include_directories(${target} INTERFACE $<BUILD_INTERFACE:${root}>)
  else()
    target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${root}>)
  endif()
endfunction()

# tinyfed_cc_library(NAME models SRCS a.cc b.cc DEPS x y)
function(tinyfed_cc_library)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(tinyfed_${ARG_NAME} STATIC ${ARG_SRCS})
  add_library(tinyfed::${ARG_NAME} ALIAS tinyfed_${ARG_NAME})
  set_target_properties(tinyfed_${ARG_NAME} PROPERTIES EXPORT_NAME ${ARG_NAME})
  tinyfed_target_defaults(tinyfed_${ARG_NAME})
  target_link_libraries(tinyfed_${ARG_NAME} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

# tinyfed_cc_test(NAME models_interpreter_test SRCS x_test.cc DEPS tinyfed::models LABELS unit)
function(tinyfed_cc_test)
  if(NOT TINYFED_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  tinyfed_target_defaults(${ARG_NAME})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_NAME})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set_tests_properties(${ARG_NAME} PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}")
endfunction()
