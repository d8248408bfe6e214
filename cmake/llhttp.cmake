# llhttp, the HTTP/1.x parser of Node.js, built from the C sources Debian
# ships in the package node-llhttp (/usr/share/llhttp/*.c and
# /usr/share/include/llhttp/llhttp.h). Defines the static library target
# shardloop_llhttp, or nothing (with a status message) when the sources are
# not installed, so only the programs that need it are skipped.
find_path(LLHTTP_INCLUDE_DIR llhttp.h
          PATHS /usr/share/include/llhttp /usr/include/llhttp /usr/include)
find_path(LLHTTP_SOURCE_DIR llhttp.c PATHS /usr/share/llhttp)
if(NOT LLHTTP_INCLUDE_DIR OR NOT LLHTTP_SOURCE_DIR)
  message(STATUS "llhttp sources not found (Debian: node-llhttp): the HTTP programs are not built")
  return()
endif()
if(TARGET shardloop_llhttp)
  return()
endif()
enable_language(C)
add_library(shardloop_llhttp STATIC
    ${LLHTTP_SOURCE_DIR}/llhttp.c ${LLHTTP_SOURCE_DIR}/api.c ${LLHTTP_SOURCE_DIR}/http.c)
target_include_directories(shardloop_llhttp SYSTEM PUBLIC ${LLHTTP_INCLUDE_DIR})
# Generated code: its warnings are not ours to fix. Always optimised: the
# parser runs on every request, in debug builds too.
target_compile_options(shardloop_llhttp PRIVATE -w -O2)
set_target_properties(shardloop_llhttp PROPERTIES POSITION_INDEPENDENT_CODE ON)
