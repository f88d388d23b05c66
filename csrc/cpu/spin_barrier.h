// A barrier for a small team of threads that meet tens of thousands of times a second (the
// fused WaveNet decoder at batch 1 meets once per layer and time step).
//
// Why not `#pragma omp barrier`: on the 2-core machines measured, libgomp's barrier cost about
// 0.9 us per meeting, which made two threads slower than one. Spinning on one atomic counter
// costs a cache-line transfer. After a long wait the spinner yields, so an oversubscribed
// machine still makes progress, and the time it waits is counted: a team that spends much of
// its time in such waits is not running on cores of its own, and does better with one thread
// (wavenet_generate_cpu.cpp).
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define FASTGEN_SPIN_PAUSE() _mm_pause()
#else
#define FASTGEN_SPIN_PAUSE() ((void)0)
#endif

namespace fastgen::cpu {

class SpinBarrier {
 public:
  static constexpr int kSpinsBeforeYield = 1 << 10;

  explicit SpinBarrier(int team) : team_(team) {}

  // Returns once all `team` threads have called it; the writes each made before calling are
  // visible to all after it (release on arrival, acquire on leaving).
  void wait() {
    if (team_ == 1) return;
    const int generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == team_ - 1) {
      arrived_.store(0, std::memory_order_relaxed);  // reset before the others can re-enter
      generation_.fetch_add(1, std::memory_order_release);
      return;
    }
    std::chrono::steady_clock::time_point slow_since;
    for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins) {
      if (spins < kSpinsBeforeYield) {
        FASTGEN_SPIN_PAUSE();
      } else {
        if (spins == kSpinsBeforeYield) slow_since = std::chrono::steady_clock::now();
        std::this_thread::yield();
      }
    }
    if (slow_since != std::chrono::steady_clock::time_point{}) {
      const auto waited = std::chrono::steady_clock::now() - slow_since;
      slow_ns_.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(waited).count(),
                         std::memory_order_relaxed);
    }
  }

  // Time the team's threads spent in waits that outlasted the spinning (a meeting of threads on
  // cores of their own takes about a microsecond; a slow one waits for the scheduler).
  int64_t slow_wait_ns() const { return slow_ns_.load(std::memory_order_relaxed); }

 private:
  const int team_;
  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<int> generation_{0};
  alignas(64) std::atomic<int64_t> slow_ns_{0};
};

}  // namespace fastgen::cpu
