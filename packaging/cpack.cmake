# Packaging: `cpack -G DEB` in a build dir makes boostvol_VERSION_ARCH.deb.
# Included at the end of the top CMakeLists.txt. What goes in (docs/packaging.md):
#   /usr/bin/boostvol                       (install(TARGETS) in the top CMakeLists.txt)
#   /usr/share/man/man1/boostvol*.1.gz      docs/man/, gzipped here
#   /usr/share/bash-completion/completions/boostvol
#   /usr/lib/systemd/system/boostvol@.service
#   /etc/boostvol/example.conf              (a conffile)
#   /usr/share/doc/boostvol/                README, docs/*.md, examples/
# No /sbin/mount.fuse.boostvol: `mount -t fuse.boostvol` runs /sbin/mount.fuse
# (from fuse3), which runs `boostvol FAST MOUNTPOINT -o OPTS` found on PATH.

include(GNUInstallDirs)
# `cpack` (and `ninja install`) install what is built and do not build
# everything first: build the binary and the man pages, then package:
#   ninja -C build boostvol boostvol_man && (cd build && cpack -G DEB)
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY TRUE)
set(BOOSTVOL_PKG_DIR ${CMAKE_CURRENT_SOURCE_DIR}/packaging)

# Man pages, gzipped with -n (no name or time: reproducible).
find_program(BOOSTVOL_GZIP gzip REQUIRED)
file(GLOB BOOSTVOL_MAN_PAGES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/docs/man/*.1)
set(BOOSTVOL_MAN_GZ)
foreach(page ${BOOSTVOL_MAN_PAGES})
  get_filename_component(name ${page} NAME)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/man/${name}.gz)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/man
    COMMAND ${BOOSTVOL_GZIP} -9 -n -c ${page} > ${out}
    DEPENDS ${page} VERBATIM)
  list(APPEND BOOSTVOL_MAN_GZ ${out})
endforeach()
add_custom_target(boostvol_man ALL DEPENDS ${BOOSTVOL_MAN_GZ})
install(FILES ${BOOSTVOL_MAN_GZ} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)

install(FILES ${BOOSTVOL_PKG_DIR}/bash-completion/boostvol DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/bash-completion/completions)
install(FILES ${BOOSTVOL_PKG_DIR}/systemd/boostvol@.service DESTINATION lib/systemd/system)
install(FILES ${BOOSTVOL_PKG_DIR}/etc/example.conf DESTINATION /etc/boostvol)

file(GLOB BOOSTVOL_DOCS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/docs/*.md)
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/README.md ${BOOSTVOL_DOCS} DESTINATION ${CMAKE_INSTALL_DOCDIR})
file(GLOB BOOSTVOL_EXAMPLES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/examples/*.sh)
install(PROGRAMS ${BOOSTVOL_EXAMPLES} DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

set(CPACK_PACKAGE_NAME boostvol)
set(CPACK_PACKAGE_VENDOR "boostvol")
set(CPACK_PACKAGE_CONTACT "boostvol maintainers <boostvol@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "write-back cache for a disk image, in user space (FUSE)")
set(CPACK_PACKAGE_DESCRIPTION
  "boostvol serves a disk image through FUSE: writes land in a log on a fast directory (SSD, NVMe) and are\n"
  "migrated home in the background to an image file on a slow directory (disk, NFS). Attach the image with\n"
  "losetup and use any filesystem on it. fsync is a real barrier and a crash leaves a prefix of the writes.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Stripped, as Debian packages are (16.8 MB with debug info, most of it DWARF).
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # boostvol_0.1.0_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://example.invalid/boostvol")
# Shared libraries from dpkg-shlibdeps when it is there (dpkg-dev); else the
# Debian 12 names. fuse3 for fusermount3 and mount.fuse (not a library).
find_program(BOOSTVOL_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(BOOSTVOL_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "fuse3")
else()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "fuse3, libfuse3-3 (>= 3.14), libsqlite3-0 (>= 3.37), libspdlog1.10-fmt9 | libspdlog1.10, libfmt9, libc6, libstdc++6, libgcc-s1")
endif()
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "util-linux")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "udisks2, sqlite3")
# Files under /etc are the admin's: conffiles.
set(BOOSTVOL_CONFFILES ${CMAKE_CURRENT_BINARY_DIR}/debian/conffiles)
file(WRITE ${BOOSTVOL_CONFFILES} "/etc/boostvol/example.conf\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${BOOSTVOL_CONFFILES})
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
