# JPEG (libturbojpeg), PNG (libspng) and optionally WebP (libwebp) for the core's image decoding.
# Found by header and library, not pkg-config, so that an unpacked .deb prefix on the GPU machine
# (CMAKE_INCLUDE_PATH / CMAKE_LIBRARY_PATH) works as well as the system's /usr.
find_path(TURBOJPEG_INCLUDE_DIR turbojpeg.h REQUIRED)
find_library(TURBOJPEG_LIBRARY NAMES turbojpeg REQUIRED)
find_path(SPNG_INCLUDE_DIR spng.h REQUIRED)
find_library(SPNG_LIBRARY NAMES spng REQUIRED)
find_path(WEBP_INCLUDE_DIR webp/decode.h)
find_library(WEBP_LIBRARY NAMES webp)

function(arcforge_link_image_codecs target)
  target_include_directories(${target} SYSTEM PRIVATE ${TURBOJPEG_INCLUDE_DIR} ${SPNG_INCLUDE_DIR})
  target_link_libraries(${target} PRIVATE ${TURBOJPEG_LIBRARY} ${SPNG_LIBRARY})
  if(WEBP_INCLUDE_DIR AND WEBP_LIBRARY)
    target_include_directories(${target} SYSTEM PRIVATE ${WEBP_INCLUDE_DIR})
    target_link_libraries(${target} PRIVATE ${WEBP_LIBRARY})
    target_compile_definitions(${target} PRIVATE ARCFORGE_HAVE_WEBP=1)
  endif()
endfunction()
