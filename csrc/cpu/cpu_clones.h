// Runtime ISA dispatch for the CPU hot loops.
//
// Why: the wheel-style build uses the baseline x86-64 ISA (SSE2), but nearly every machine
// that runs it has AVX2+FMA. target_clones compiles the marked function twice and picks the
// best version when the library loads, so the loops auto-vectorize 8-wide where they can
// without making the binary crash on older CPUs.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(FASTGEN_NO_CLONES)
#define FASTGEN_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FASTGEN_CPU_CLONES
#endif
