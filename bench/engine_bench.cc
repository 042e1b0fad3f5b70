// engine_bench: the engine's CPU per request, without FUSE.
//
// Creates a volume in a scratch directory, opens it with the migrator off,
// and issues 4 KiB random writes (then 4 KiB random reads of blocks the log
// holds) from one thread, as the FUSE reader does. Reports, per op, the wall
// time of the call, the calling thread's CPU time, and the whole process's
// CPU time (the log's flusher thread included). Built only with
// -DBOOSTVOL_BENCH=ON (target engine_bench); docs/tuning.md "Hot path".
//
//   engine_bench [--dir D] [--ops N] [--image-mib M] [--rounds R] [--blocks B]
//
// B: blocks per request (default 1: 4 KiB requests).
//
// D defaults to /dev/shm (tmpfs: the flusher's writes cost little, so the
// figures are the engine's own CPU); it must not exist or be empty.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <sys/resource.h>
#include <time.h>
#include <vector>

#include <spdlog/spdlog.h>

#include "boostvol/volume.h"

namespace {

double ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

// The calling thread's user-space CPU alone (the engine's code, no syscalls).
double ThreadUserNs() {
  rusage ru;
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_utime.tv_sec * 1e9 + ru.ru_utime.tv_usec * 1e3;
}

double ProcessCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

double WallNs() {
  return static_cast<double>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

struct Figures {
  double wall = 0, thread_cpu = 0, thread_user = 0, process_cpu = 0;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void Die(const char* what, const boostvol::Status& s) {
  std::fprintf(stderr, "engine_bench: %s: %s\n", what, s.ToString().c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/dev/shm/boostvol-engine-bench";
  uint64_t ops = 100000, image_mib = 256, rounds = 5, blocks = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--dir") dir = argv[i + 1];
    else if (a == "--ops") ops = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--image-mib") image_mib = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--rounds") rounds = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--blocks") blocks = std::max<uint64_t>(1, std::strtoull(argv[i + 1], nullptr, 10));
    else {
      std::fprintf(stderr, "usage: engine_bench [--dir D] [--ops N] [--image-mib M] [--rounds R] [--blocks B]\n");
      return 2;
    }
  }
  spdlog::set_level(spdlog::level::warn);
  const uint64_t image_blocks = image_mib * 256;
  std::vector<Figures> w(rounds), r(rounds);
  std::mt19937_64 rng(42);
  const uint64_t bs = blocks * 4096;
  std::vector<uint8_t> buf(bs);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  std::vector<uint8_t> out(bs);
  for (uint64_t round = 0; round < rounds; round++) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir + "/fast");
    std::filesystem::create_directories(dir + "/slow");
    boostvol::CreateOptions co;
    co.fast_dir = dir + "/fast";
    co.slow_dir = dir + "/slow";
    co.image_size = image_blocks * 4096;
    // Room for every write of the round (no waiting for the migrator).
    co.cache_size = (ops * bs * 11 / 10 + (64 << 20)) / (4 << 20) * (4 << 20);
    if (auto s = boostvol::CreateVolume(co); !s.ok()) Die("create", s);
    boostvol::OpenOptions oo;
    oo.fast_dir = co.fast_dir;
    oo.start_migrator = false;
    std::unique_ptr<boostvol::Volume> v;
    if (auto s = boostvol::Volume::Open(oo, &v); !s.ok()) Die("open", s);
    std::vector<uint64_t> lbas(ops);
    for (auto& l : lbas) l = rng() % (image_blocks - blocks + 1);
    // Writes: a few bytes differ per op (a realistic crc input, no zero blocks).
    double t0 = WallNs(), c0 = ThreadCpuNs(), u0 = ThreadUserNs(), p0 = ProcessCpuNs();
    for (uint64_t i = 0; i < ops; i++) {
      std::memcpy(buf.data(), &i, sizeof(i));
      if (auto s = v->Write(lbas[i] * 4096, bs, buf.data()); !s.ok()) Die("write", s);
    }
    w[round] = {(WallNs() - t0) / ops, (ThreadCpuNs() - c0) / ops, (ThreadUserNs() - u0) / ops, (ProcessCpuNs() - p0) / ops};
    if (auto s = v->Flush(); !s.ok()) Die("flush", s);
    // Reads of blocks the log holds (durable, out of the write buffers).
    t0 = WallNs(), c0 = ThreadCpuNs(), u0 = ThreadUserNs(), p0 = ProcessCpuNs();
    for (uint64_t i = 0; i < ops; i++)
      if (auto s = v->Read(lbas[ops - 1 - i] * 4096, bs, out.data()); !s.ok()) Die("read", s);
    r[round] = {(WallNs() - t0) / ops, (ThreadCpuNs() - c0) / ops, (ThreadUserNs() - u0) / ops, (ProcessCpuNs() - p0) / ops};
    if (auto s = v->Close(); !s.ok()) Die("close", s);
    v.reset();
    std::printf("round %llu: write %.0f ns wall %.0f thread-cpu %.0f thread-user %.0f process-cpu | "
                "read %.0f ns wall %.0f thread-cpu %.0f thread-user %.0f process-cpu\n",
                static_cast<unsigned long long>(round), w[round].wall, w[round].thread_cpu, w[round].thread_user,
                w[round].process_cpu, r[round].wall, r[round].thread_cpu, r[round].thread_user, r[round].process_cpu);
  }
  std::filesystem::remove_all(dir);
  auto med = [](const std::vector<Figures>& f, double Figures::*m) {
    std::vector<double> v;
    for (const auto& x : f) v.push_back(x.*m);
    return Median(v);
  };
  std::printf("median of %llu x %llu ops (per op): write4k %.0f ns wall, %.0f thread-cpu, %.0f thread-user, %.0f "
              "process-cpu; read4k(cached) %.0f ns wall, %.0f thread-cpu, %.0f thread-user, %.0f process-cpu\n",
              static_cast<unsigned long long>(rounds), static_cast<unsigned long long>(ops), med(w, &Figures::wall),
              med(w, &Figures::thread_cpu), med(w, &Figures::thread_user), med(w, &Figures::process_cpu),
              med(r, &Figures::wall), med(r, &Figures::thread_cpu), med(r, &Figures::thread_user),
              med(r, &Figures::process_cpu));
  return 0;
}
