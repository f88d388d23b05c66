// The persistent WaveNet decoder's block program (kernels/wavenet/wavenet_decoder_body.h) run on
// the CPU: one std::thread per CUDA thread, std::barrier for __syncthreads and for each warp's
// shuffles. Built by tests/test_wavenet_decoder_cuda.py with g++ and called through ctypes, so
// the kernel's indexing, data layout and barrier placement are tested on machines without a
// GPU. Not part of the package.
#include <barrier>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "wavenet_decoder_body.h"

namespace {

using fastgen::decoder::Args;
using fastgen::decoder::Shape;

struct Warp {
  std::barrier<> barrier{32};
  alignas(8) unsigned char slots[32][8];
};

struct SharedState {
  explicit SharedState(int threads) : block(threads) {
    for (int w = 0; w < threads / 32; ++w) warps.push_back(std::make_unique<Warp>());
  }
  std::barrier<> block;
  std::vector<std::unique_ptr<Warp>> warps;
};

// The Block interface of wavenet_decoder_body.h for one emulated thread.
struct EmulatedBlock {
  SharedState* shared;
  int tid, count;
  int thread() const { return tid; }
  int threads() const { return count; }
  void sync() const { shared->block.arrive_and_wait(); }
  template <typename T>
  T shfl_idx(T v, int lane) const {  // every lane of the warp calls it together, as on a GPU
    static_assert(sizeof(T) <= 8);
    Warp& warp = *shared->warps[tid / 32];
    std::memcpy(warp.slots[tid % 32], &v, sizeof(T));
    warp.barrier.arrive_and_wait();
    T out;
    std::memcpy(&out, warp.slots[lane], sizeof(T));
    warp.barrier.arrive_and_wait();
    return out;
  }
  template <typename T>
  T shfl_xor(T v, int mask) const { return shfl_idx(v, (tid % 32) ^ mask); }
  template <typename T>
  T shfl_up(T v, int delta) const {
    const int lane = tid % 32;
    return shfl_idx(v, lane >= delta ? lane - delta : lane);
  }
};

template <typename S>
void run(const Args<S>& args, int threads) {
  const size_t bytes = fastgen::decoder::smem_bytes(args.shape, sizeof(S), sizeof(S), args.resident_elems);
  for (int64_t n = 0; n < args.batch; ++n) {  // blocks one after another, as a GPU may run them
    std::vector<double> smem((bytes + sizeof(double) - 1) / sizeof(double), -12345.0);  // poisoned
    SharedState shared(threads);
    std::vector<std::thread> pool;
    for (int tid = 0; tid < threads; ++tid) {
      pool.emplace_back([&, tid] {
        EmulatedBlock block{&shared, tid, threads};
        fastgen::decoder::decode_sample<S, S>(args, n, block, reinterpret_cast<unsigned char*>(smem.data()));
      });
    }
    for (auto& thread : pool) thread.join();
  }
}

}  // namespace

extern "C" {

// dims: layers, K, R, G, S, H, levels, C_cond. double_precision selects float64 (else float32).
int emulate_wavenet_decoder(int double_precision, void* const* rings, const int64_t* dilations,
                            const void* first_input, const void* uniforms, const void* embedding,
                            const void* weights, const void* cond, int64_t* codes, int64_t batch, int64_t steps,
                            int64_t start, int64_t resident_elems, const int64_t* dims, int threads) {
  const Shape shape{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7]};
  if (threads < 32 || threads % 32 != 0) return 1;
  if (double_precision) {
    run(Args<double>{reinterpret_cast<double* const*>(rings), dilations, static_cast<const double*>(first_input),
                     static_cast<const double*>(uniforms), static_cast<const double*>(embedding),
                     static_cast<const double*>(weights), static_cast<const double*>(cond), codes, batch, steps,
                     start, resident_elems, shape},
        threads);
  } else {
    run(Args<float>{reinterpret_cast<float* const*>(rings), dilations, static_cast<const float*>(first_input),
                    static_cast<const float*>(uniforms), static_cast<const float*>(embedding),
                    static_cast<const float*>(weights), static_cast<const float*>(cond), codes, batch, steps, start,
                    resident_elems, shape},
        threads);
  }
  return 0;
}

// The shared-memory bytes of the plan (checked against the Python mirror).
int64_t wavenet_decoder_smem_bytes(const int64_t* dims, int64_t acc_bytes, int64_t scalar_bytes,
                                   int64_t resident_elems) {
  const Shape shape{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7]};
  return static_cast<int64_t>(fastgen::decoder::smem_bytes(shape, acc_bytes, scalar_bytes, resident_elems));
}

}  // extern "C"
