// The persistent WaveNet decoder's block programs (kernels/wavenet/wavenet_decoder_body.h, one
// block per sample, and wavenet_decoder_cluster.h, a cluster of blocks per sample) run on the CPU:
// one std::thread per CUDA thread, std::barrier for __syncthreads, for each warp's shuffles and
// for the cluster barrier, each block's shared memory a buffer the others can address. Built by
// tests/decoder_emulation.py with g++ and called through ctypes, so the kernels' indexing, data
// layout and barrier placement are tested on machines without a GPU. Not part of the package.
#include <barrier>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "wavenet_decoder_cluster.h"

namespace {

using fastgen::decoder::Args;
using fastgen::decoder::ClusterPlan;
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

// What the blocks of one cluster share: its barrier and where each block's shared memory is.
struct ClusterState {
  ClusterState(int blocks, int threads) : barrier(blocks * threads), smem(blocks) {}
  std::barrier<> barrier;
  std::vector<unsigned char*> smem;
};

// The Block interface of wavenet_decoder_body.h (and the cluster calls of
// wavenet_decoder_cluster.h) for one emulated thread.
struct EmulatedBlock {
  SharedState* shared;
  int tid, count;
  ClusterState* cluster = nullptr;
  int rank = 0;
  int thread() const { return tid; }
  int threads() const { return count; }
  void sync() const { shared->block.arrive_and_wait(); }
  int cluster_rank() const { return rank; }
  int cluster_size() const { return static_cast<int>(cluster->smem.size()); }
  void cluster_sync() const { cluster->barrier.arrive_and_wait(); }
  template <typename T>
  T* map_shared(T* local, int other) const {
    const auto offset = reinterpret_cast<unsigned char*>(local) - cluster->smem[rank];
    return reinterpret_cast<T*>(cluster->smem[other] + offset);
  }
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

// One cluster of `blocks` blocks per sample, all of a cluster's threads running at once.
template <typename S>
void run_cluster(const Args<S>& args, const ClusterPlan& plan, int threads) {
  const size_t bytes = fastgen::decoder::cluster_smem_bytes(args.shape, plan.cluster, sizeof(S), sizeof(S),
                                                            plan.resident_layers, plan.head_resident);
  const int blocks = static_cast<int>(plan.cluster);
  for (int64_t n = 0; n < args.batch; ++n) {
    std::vector<std::vector<double>> smem(blocks, std::vector<double>((bytes + 7) / 8, -12345.0));  // poisoned
    ClusterState cluster(blocks, threads);
    std::vector<std::unique_ptr<SharedState>> shared;
    for (int b = 0; b < blocks; ++b) {
      cluster.smem[b] = reinterpret_cast<unsigned char*>(smem[b].data());
      shared.push_back(std::make_unique<SharedState>(threads));
    }
    std::vector<std::thread> pool;
    for (int b = 0; b < blocks; ++b)
      for (int tid = 0; tid < threads; ++tid)
        pool.emplace_back([&, b, tid] {
          EmulatedBlock block{shared[b].get(), tid, threads, &cluster, b};
          fastgen::decoder::decode_sample_cluster<S, S>(args, plan, n, block, cluster.smem[b]);
        });
    for (auto& thread : pool) thread.join();
  }
}

template <typename S>
Args<S> args_of(void* const* rings, const int64_t* dilations, const void* first_input, const void* uniforms,
                const void* embedding, const void* weights, const void* cond, int64_t* codes, int64_t batch,
                int64_t steps, int64_t start, int64_t resident_elems, const Shape& shape) {
  return Args<S>{reinterpret_cast<S* const*>(rings), dilations, static_cast<const S*>(first_input),
                 static_cast<const S*>(uniforms), static_cast<const S*>(embedding), static_cast<const S*>(weights),
                 static_cast<const S*>(cond), codes, batch, steps, start, resident_elems, shape};
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
    run(args_of<double>(rings, dilations, first_input, uniforms, embedding, weights, cond, codes, batch, steps,
                        start, resident_elems, shape),
        threads);
  } else {
    run(args_of<float>(rings, dilations, first_input, uniforms, embedding, weights, cond, codes, batch, steps, start,
                       resident_elems, shape),
        threads);
  }
  return 0;
}

// The cluster decoder: `cluster` blocks per sample, the first `resident_layers` layers' slices
// (and the head's, if head_resident) in shared memory.
int emulate_wavenet_decoder_cluster(int double_precision, void* const* rings, const int64_t* dilations,
                                    const void* first_input, const void* uniforms, const void* embedding,
                                    const void* weights, const void* cond, int64_t* codes, int64_t batch,
                                    int64_t steps, int64_t start, const int64_t* dims, int threads, int64_t cluster,
                                    int64_t resident_layers, int head_resident) {
  const Shape shape{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7]};
  if (threads < 32 || threads % 32 != 0 || cluster < 1) return 1;
  const ClusterPlan plan{cluster, resident_layers, head_resident != 0};
  if (double_precision) {
    run_cluster(args_of<double>(rings, dilations, first_input, uniforms, embedding, weights, cond, codes, batch,
                                steps, start, 0, shape),
                plan, threads);
  } else {
    run_cluster(args_of<float>(rings, dilations, first_input, uniforms, embedding, weights, cond, codes, batch,
                               steps, start, 0, shape),
                plan, threads);
  }
  return 0;
}

int64_t wavenet_decoder_cluster_smem_bytes(const int64_t* dims, int64_t cluster, int64_t acc_bytes,
                                           int64_t scalar_bytes, int64_t resident_layers, int head_resident) {
  const Shape shape{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7]};
  return static_cast<int64_t>(fastgen::decoder::cluster_smem_bytes(shape, cluster, acc_bytes, scalar_bytes,
                                                                   resident_layers, head_resident != 0));
}

// The shared-memory bytes of the plan (checked against the Python mirror).
int64_t wavenet_decoder_smem_bytes(const int64_t* dims, int64_t acc_bytes, int64_t scalar_bytes,
                                   int64_t resident_elems) {
  const Shape shape{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7]};
  return static_cast<int64_t>(fastgen::decoder::smem_bytes(shape, acc_bytes, scalar_bytes, resident_elems));
}

}  // extern "C"
