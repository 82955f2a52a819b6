# Installs nanode from BUILD_DIR into PREFIX, then configures, builds and runs the
# consumer project in SOURCE_DIR against it.
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message("${out}")
endfunction()

file(REMOVE_RECURSE ${PREFIX} ${WORK_DIR})
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX})
set(cuda_arg)
if(CUDA_COMPILER)
  set(cuda_arg -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER})
endif()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR} -DCMAKE_PREFIX_PATH=${PREFIX} -DCMAKE_BUILD_TYPE=Release ${cuda_arg})
# Both programs at once where the machine has the cores (each is a compile of the
# whole header-only library).
cmake_host_system_information(RESULT cores QUERY NUMBER_OF_LOGICAL_CORES)
run(${CMAKE_COMMAND} --build ${WORK_DIR} --parallel ${cores})
run(${WORK_DIR}/consumer)
if(EXISTS ${WORK_DIR}/consumer_emulated)
  run(${WORK_DIR}/consumer_emulated)
endif()
