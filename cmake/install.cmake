# Install rules and the CMake package, so another project can use
#   find_package(shardloop REQUIRED)
#   target_link_libraries(app PRIVATE shardloop::shardloop)
#
# Layout under the prefix:
#   lib/libshardloop.a
#   include/shardloop/shardloop.hpp                  the umbrella header
#   include/shardloop/{runtime,net,process,policy}/  the layers' headers
#   lib/cmake/shardloop/shardloop{Config,ConfigVersion,Targets}.cmake
# The installed target's include directory is include/shardloop, so code
# includes <shardloop.hpp> or "runtime/event_loop.hpp" as in the source tree.
#
# Every rule here is in the component "shardloop", so the library and its
# headers can be installed without building the tests, benchmarks and apps:
#   cmake --build B --target shardloop
#   cmake --install B --component shardloop --prefix P

include(CMakePackageConfigHelpers)

set(SHARDLOOP_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/shardloop)
set(SHARDLOOP_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/shardloop)

install(TARGETS shardloop
        EXPORT shardloopTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT shardloop
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT shardloop
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT shardloop)

# Headers are matched when `cmake --install` runs, not at configure time, so a
# header added since the last configure is installed too.
foreach(dir IN ITEMS runtime net process policy)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir}
          DESTINATION ${SHARDLOOP_INSTALL_INCLUDEDIR}
          COMPONENT shardloop
          FILES_MATCHING PATTERN "*.hpp")
endforeach()
# OPTIONAL only until the umbrella header exists.
install(FILES ${PROJECT_SOURCE_DIR}/shardloop.hpp
        DESTINATION ${SHARDLOOP_INSTALL_INCLUDEDIR}
        COMPONENT shardloop
        OPTIONAL)

install(EXPORT shardloopTargets
        NAMESPACE shardloop::
        FILE shardloopTargets.cmake
        DESTINATION ${SHARDLOOP_INSTALL_CMAKEDIR}
        COMPONENT shardloop)

# The config finds the library's dependencies before it loads the exported
# target: a dependency added to the target in the top-level CMakeLists.txt
# needs a line in cmake/shardloopConfig.cmake.in too.
configure_package_config_file(
    ${CMAKE_CURRENT_LIST_DIR}/shardloopConfig.cmake.in
    ${PROJECT_BINARY_DIR}/shardloopConfig.cmake
    INSTALL_DESTINATION ${SHARDLOOP_INSTALL_CMAKEDIR})
write_basic_package_version_file(
    ${PROJECT_BINARY_DIR}/shardloopConfigVersion.cmake
    VERSION ${PROJECT_VERSION}
    COMPATIBILITY SameMajorVersion)
install(FILES
        ${PROJECT_BINARY_DIR}/shardloopConfig.cmake
        ${PROJECT_BINARY_DIR}/shardloopConfigVersion.cmake
        DESTINATION ${SHARDLOOP_INSTALL_CMAKEDIR}
        COMPONENT shardloop)
