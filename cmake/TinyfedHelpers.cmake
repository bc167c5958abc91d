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

function(tinyfed_target_defaults target)
  target_compile_options(${target} PRIVATE ${TINYFED_WARNINGS})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
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
