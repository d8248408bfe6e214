#pragma once

// Which sanitizer this translation unit is built with, for g++ and clang alike.

#if defined(__SANITIZE_ADDRESS__)
#define SHARDLOOP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SHARDLOOP_ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define SHARDLOOP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SHARDLOOP_TSAN 1
#endif
#endif
