# The gallery's and the service's system libraries, as imported targets:
#   dep_faiss    FAISS (Debian ships only the static libfaiss.a; its CMake config points at a wrong
#                prefix, so the library is found directly), with OpenMP and the system BLAS/LAPACK
#   dep_sqlite   SQLite 3
#   dep_crypto   OpenSSL's libcrypto (SHA-256 of source images)
#   dep_httplib  cpp-httplib: Debian builds it as a library with TLS, zlib and brotli switched on,
#                and the header must see the same switches as the library was built with
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(SQLite3 REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)
find_package(PkgConfig REQUIRED)

find_path(ARCFORGE_FAISS_INCLUDE faiss/IndexFlat.h REQUIRED)
find_library(ARCFORGE_FAISS_LIBRARY NAMES libfaiss.a faiss REQUIRED)
find_library(ARCFORGE_BLAS_LIBRARY blas REQUIRED)
find_library(ARCFORGE_LAPACK_LIBRARY lapack REQUIRED)
add_library(dep_faiss INTERFACE)
target_include_directories(dep_faiss SYSTEM INTERFACE ${ARCFORGE_FAISS_INCLUDE})
target_link_libraries(dep_faiss INTERFACE ${ARCFORGE_FAISS_LIBRARY} OpenMP::OpenMP_CXX
                      ${ARCFORGE_LAPACK_LIBRARY} ${ARCFORGE_BLAS_LIBRARY})

add_library(dep_sqlite INTERFACE)
target_link_libraries(dep_sqlite INTERFACE SQLite::SQLite3)
add_library(dep_crypto INTERFACE)
target_link_libraries(dep_crypto INTERFACE OpenSSL::Crypto)

pkg_check_modules(ARCFORGE_HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
add_library(dep_httplib INTERFACE)
target_link_libraries(dep_httplib INTERFACE PkgConfig::ARCFORGE_HTTPLIB)
