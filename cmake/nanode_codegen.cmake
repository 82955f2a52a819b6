# Guards against a known silent miscompile: compiles and runs
# probes/codegen_probe.cpp with the flags a build is about to use, and finds
# extra flags that make it correct. Used by nanode's own build (CMakeLists.txt)
# and by the installed package config (consumers get the same protection).
#
# nanode_codegen_fix(<out-var> <flags...>)
#   Sets <out-var> to the extra flags needed ("" when none) and prints one line
#   when it adds any. Fails the configure step when no known flag helps.
set(_NANODE_CODEGEN_PROBE "${CMAKE_CURRENT_LIST_DIR}/probes/codegen_probe.cpp")

# The probe is compiled as the build compiles: CMAKE_CXX_FLAGS, the flags of the
# build type (CMAKE_BUILD_TYPE, Release when unset), then the given flags.
function(_nanode_codegen_try out)
  set(config "${CMAKE_BUILD_TYPE}")
  if(NOT config)
    set(config Release)
  endif()
  string(TOUPPER "${config}" cfg)
  set(CMAKE_TRY_COMPILE_CONFIGURATION ${config})
  string(SHA1 key "${CMAKE_CXX_COMPILER};${CMAKE_CXX_COMPILER_VERSION};${CMAKE_CXX_FLAGS};${CMAKE_CXX_FLAGS_${cfg}};${ARGN}")
  string(SUBSTRING "${key}" 0 12 key)
  set(var "NANODE_CODEGEN_OK_${key}")
  if(DEFINED ${var})
    set(${out} ${${var}} PARENT_SCOPE)
    return()
  endif()
  try_run(run_rc compile_ok
    "${CMAKE_BINARY_DIR}/nanode_codegen_probe/${key}" "${_NANODE_CODEGEN_PROBE}"
    COMPILE_DEFINITIONS ${ARGN}
    COMPILE_OUTPUT_VARIABLE compile_out
    RUN_OUTPUT_VARIABLE run_out)
  if(compile_ok AND "${run_rc}" STREQUAL "0")
    set(ok TRUE)
  elseif(NOT compile_ok)
    set(ok UNUSABLE)  # these flags do not compile at all (e.g. an unknown -march)
  else()
    set(ok FALSE)
  endif()
  set(${var} ${ok} CACHE INTERNAL "nanode codegen probe (${config}) with: ${ARGN}")
  set(${out} ${ok} PARENT_SCOPE)
endfunction()

function(nanode_codegen_fix out)
  set(${out} "" PARENT_SCOPE)
  if(CMAKE_CROSSCOMPILING OR NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    return()
  endif()
  _nanode_codegen_try(ok ${ARGN})
  if(NOT ok STREQUAL "FALSE")
    return()  # correct, or the flags do not compile here (the build itself will say so)
  endif()
  foreach(fix "-fno-tree-slp-vectorize" "-march=x86-64-v3")
    _nanode_codegen_try(ok ${ARGN} ${fix})
    if(ok STREQUAL "TRUE")
      string(TOUPPER "${CMAKE_BUILD_TYPE}" cfg)
      message(STATUS "nanode: ${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION} miscompiles a struct constant {2,2,0,0} (as a broadcast of 2) with '${CMAKE_CXX_FLAGS} ${CMAKE_CXX_FLAGS_${cfg}} ${ARGN}'; adding ${fix}")
      set(${out} ${fix} PARENT_SCOPE)
      return()
    endif()
  endforeach()
  message(FATAL_ERROR "nanode: ${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION} miscompiles cmake/probes/codegen_probe.cpp with '${ARGN}' and no known flag fixes it; use other flags (e.g. -DNANODE_NATIVE=OFF) or another compiler")
endfunction()
