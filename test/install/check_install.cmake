# Script mode: install, then build consumer.c with pkg-config and with
# find_package, and run both programs.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(LAST_OUT "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

# 1. pkg-config
find_program(PKG_CONFIG pkg-config REQUIRED)
set(ENV{PKG_CONFIG_PATH} "${prefix}/lib/pkgconfig:${prefix}/lib/x86_64-linux-gnu/pkgconfig")
run(${PKG_CONFIG} --cflags --libs ctwist)
string(STRIP "${LAST_OUT}" flags)
separate_arguments(flags UNIX_COMMAND "${flags}")
run(cc -std=c11 -Wall -Wextra -Werror ${SRC_DIR}/consumer.c -o ${WORK_DIR}/consumer_pc ${flags})
file(GLOB libdirs ${prefix}/lib ${prefix}/lib/*-linux-gnu)
string(JOIN ":" ldpath ${libdirs})
set(ENV{LD_LIBRARY_PATH} "${ldpath}")
run(${WORK_DIR}/consumer_pc)
message(STATUS "pkg-config consumer: ${LAST_OUT}")

# 2. find_package(ctwist)
file(WRITE ${WORK_DIR}/cm/CMakeLists.txt
"cmake_minimum_required(VERSION 3.20)
project(consumer C)
find_package(ctwist REQUIRED)
add_executable(consumer ${SRC_DIR}/consumer.c)
target_link_libraries(consumer PRIVATE ctwist::ctwist)
")
run(${CMAKE_COMMAND} -S ${WORK_DIR}/cm -B ${WORK_DIR}/cm/build -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/cm/build)
run(${WORK_DIR}/cm/build/consumer)
message(STATUS "find_package consumer: ${LAST_OUT}")
