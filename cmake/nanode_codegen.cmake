# Guards against a known silent miscompile: compiles and runs
# probes/codegen_probe.cpp with the flags a build is about to use, and finds
# extra flags that make it correct. Used by nanode's own build (CMakeLists.txt)
# and by the installed package config (consumers get the same protection).
#
# nanode_codegen_fix(<out-var> [FLAGS <flags...>] [FIXES <fixes...>] [SOFT])
#   Probes with CMAKE_CXX_FLAGS, the flags of each build configuration
#   (CMAKE_CONFIGURATION_TYPES, or CMAKE_BUILD_TYPE, Release when unset) and
#   FLAGS. Sets <out-var> to the first of FIXES (default: -fno-tree-slp-vectorize,
#   then -march=x86-64-v3) that makes every configuration correct, "" when none
#   is needed, and prints one line when it adds one. When nothing helps it stops
#   the configure step, or with SOFT only warns.
set(_NANODE_CODEGEN_PROBE "${CMAKE_CURRENT_LIST_DIR}/probes/codegen_probe.cpp")

# TRUE, FALSE (miscompiled) or UNUSABLE (the flags do not compile here), cached
# per compiler, probe source, configuration and flags.
function(_nanode_codegen_try out config)
  string(TOUPPER "${config}" cfg)
  set(CMAKE_TRY_COMPILE_CONFIGURATION ${config})
  file(SHA1 "${_NANODE_CODEGEN_PROBE}" probe_hash)
  string(SHA1 key "${probe_hash};${CMAKE_CXX_COMPILER};${CMAKE_CXX_COMPILER_VERSION};${CMAKE_CXX_FLAGS};${CMAKE_CXX_FLAGS_${cfg}};${ARGN}")
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
    set(ok UNUSABLE)
  else()
    set(ok FALSE)
  endif()
  set(${var} ${ok} CACHE INTERNAL "nanode codegen probe (${config}) with: ${ARGN}")
  set(${out} ${ok} PARENT_SCOPE)
endfunction()

function(nanode_codegen_fix out)
  cmake_parse_arguments(P "SOFT" "" "FLAGS;FIXES" ${ARGN})
  set(${out} "" PARENT_SCOPE)
  if(CMAKE_CROSSCOMPILING OR NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    return()
  endif()
  if(NOT P_FIXES)
    set(P_FIXES -fno-tree-slp-vectorize -march=x86-64-v3)
  endif()
  set(configs ${CMAKE_CONFIGURATION_TYPES})
  if(NOT configs)
    set(configs "${CMAKE_BUILD_TYPE}")
    if(NOT configs)
      set(configs Release)
    endif()
  endif()
  # The configurations that are miscompiled as they stand (a configuration whose
  # flags do not compile at all is left to the build itself to report).
  set(bad)
  foreach(config IN LISTS configs)
    _nanode_codegen_try(ok ${config} ${P_FLAGS})
    if(ok STREQUAL "FALSE")
      list(APPEND bad ${config})
    endif()
  endforeach()
  if(NOT bad)
    return()
  endif()
  foreach(fix IN LISTS P_FIXES)
    set(all_ok TRUE)
    foreach(config IN LISTS bad)
      _nanode_codegen_try(ok ${config} ${P_FLAGS} ${fix})
      if(NOT ok STREQUAL "TRUE")
        set(all_ok FALSE)
      endif()
    endforeach()
    if(all_ok)
      message(STATUS "nanode: ${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION} miscompiles a struct constant {2,2,0,0} (as a broadcast of 2) with the flags of ${bad} plus '${P_FLAGS}'; adding ${fix}")
      set(${out} ${fix} PARENT_SCOPE)
      return()
    endif()
  endforeach()
  set(msg "nanode: ${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION} miscompiles cmake/probes/codegen_probe.cpp with the flags of ${bad} plus '${P_FLAGS}', and none of '${P_FIXES}' fixes it")
  if(P_SOFT)
    message(WARNING "${msg}; do not build nanode code with those flags")
  else()
    message(FATAL_ERROR "${msg}; use other flags (e.g. -DNANODE_NATIVE=OFF) or another compiler")
  endif()
endfunction()
