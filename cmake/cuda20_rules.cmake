# CMake < 3.26 knows no C++20 flag for nvcc and refuses CMAKE_CUDA_STANDARD 20 (even in the compiler
# check of enable_language). Passing this file as CMAKE_USER_MAKE_RULES_OVERRIDE_CUDA teaches it the
# flag; newer CMake sets the same values itself, so using it unconditionally is harmless.
set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
