// Gloo float32 allreduce benchmark (peer baseline for gccl's TCP backend).
//
// N ranks run as separate processes on one machine, rendezvous through
// gloo::rendezvous::FileStore (a directory), and talk over gloo's TCP
// transport bound to 127.0.0.1. For every message size it:
//   1. verifies one allreduce against the known sum (untimed),
//   2. runs a fixed number of warmup iterations,
//   3. rank 0 turns the warmup median into an iteration count worth
//      ~--target-sec seconds (min --min-iters) and broadcasts it,
//   4. runs that many back-to-back allreduces (no barrier in between),
//      timing each one individually, and rank 0 prints the median.
//
// Output: one JSON line per (algorithm, size) on stdout, printed by rank 0.
//
// Usage (launcher mode: forks N ranks itself):
//   gloo_allreduce -n 4 [--algo default,ring] [--sizes 8,64,...,64M]
// Usage (one rank per invocation; start N of them with the same --store):
//   gloo_allreduce -n 4 --rank R --store /tmp/dir [--prefix run1] ...
//
// Algorithms (--algo, comma separated):
//   default      gloo::allreduce(AllreduceOptions), algorithm UNSPECIFIED,
//                which this gloo build maps to its segmented ring
//                (reduce-scatter + allgather, <=1 MiB segments,
//                2 in flight). Out-of-place (separate input/output). This
//                is what PyTorch's ProcessGroupGloo uses for CPU tensors.
//                impl = "gloo"
//   ring         legacy gloo::AllreduceRing<float> (in-place; passes the
//                WHOLE buffer around the ring n-1 times, i.e. not
//                bandwidth-optimal for n>2).   impl = "gloo-allreduce-ring"
//   ringchunked  legacy gloo::AllreduceRingChunked<float> (in-place,
//                chunked/bandwidth-optimal ring). impl = "gloo-ring-chunked"
//   hd           legacy gloo::AllreduceHalvingDoubling<float> (in-place).
//                impl = "gloo-halving-doubling"
//   bcube        gloo::allreduce with Algorithm::BCUBE (out-of-place).
//                impl = "gloo-bcube"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gloo/algorithm.h"
#include "gloo/allreduce.h"
#include "gloo/allreduce_halving_doubling.h"
#include "gloo/allreduce_ring.h"
#include "gloo/allreduce_ring_chunked.h"
#include "gloo/broadcast.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/file_store.h"
#include "gloo/rendezvous/prefix_store.h"
#include "gloo/transport/tcp/device.h"

#include "common.h"

namespace {

struct Config {
  int nranks = 0;
  int rank = -1;  // -1: launcher mode (fork nranks children)
  std::string store;
  std::string prefix = "gccl-peers";
  std::string host = "127.0.0.1";
  std::vector<std::string> algos = {"default"};
  std::vector<size_t> sizes;
  double target_sec = PEERS_DEFAULT_TARGET_SEC;
  long min_iters = PEERS_DEFAULT_MIN_ITERS;
  long max_iters = PEERS_DEFAULT_MAX_ITERS;
  bool check = true;
  bool verbose = false;
  int timeout_sec = 300;
};

// Control-plane tags (data-plane ops use tag 0 / legacy slots).
constexpr uint32_t kTagIters = 1001;
constexpr uint32_t kTagWrong = 1002;

const char* implName(const std::string& algo) {
  if (algo == "default") return "gloo";
  if (algo == "ring") return "gloo-allreduce-ring";
  if (algo == "ringchunked") return "gloo-ring-chunked";
  if (algo == "hd") return "gloo-halving-doubling";
  if (algo == "bcube") return "gloo-bcube";
  return nullptr;
}

// A runnable allreduce over a fixed buffer. run() performs one collective.
struct Runner {
  virtual ~Runner() = default;
  virtual void run() = 0;
  // Buffer holding the result after run().
  virtual float* result() = 0;
  // Prepare the inputs for the verification run.
  virtual void fillForCheck(int rank) = 0;
  // Prepare the inputs for the timed runs.
  virtual void fillForTiming(int rank) = 0;
};

// gloo::allreduce (new-style API), out-of-place.
struct OptionsRunner : Runner {
  std::vector<float> in, out;
  std::unique_ptr<gloo::AllreduceOptions> opts;

  OptionsRunner(const std::shared_ptr<gloo::Context>& ctx, size_t count,
                gloo::AllreduceOptions::Algorithm algo,
                std::chrono::milliseconds timeout)
      : in(count), out(count) {
    opts.reset(new gloo::AllreduceOptions(ctx));
    opts->setAlgorithm(algo);
    opts->setInput(in.data(), count);
    opts->setOutput(out.data(), count);
    opts->setReduceFunction(
        static_cast<void (*)(void*, const void*, const void*, size_t)>(
            &gloo::sum<float>));
    opts->setTag(0);
    opts->setTimeout(timeout);
  }
  void run() override { gloo::allreduce(*opts); }
  float* result() override { return out.data(); }
  void fillForCheck(int rank) override {
    peers_fill_input(in.data(), in.size(), rank);
    std::fill(out.begin(), out.end(), -1.0f);
  }
  // Input stays constant across iterations (out-of-place), so the timed
  // runs reuse the verification pattern.
  void fillForTiming(int rank) override {
    peers_fill_input(in.data(), in.size(), rank);
  }
};

// Legacy gloo::Algorithm subclasses (AllreduceRing etc.), in-place.
template <template <typename> class Algo>
struct LegacyRunner : Runner {
  std::vector<float> buf;
  std::unique_ptr<gloo::Algorithm> algo;

  LegacyRunner(const std::shared_ptr<gloo::Context>& ctx, size_t count)
      : buf(count) {
    std::vector<float*> ptrs = {buf.data()};
    algo.reset(new Algo<float>(ctx, ptrs, (int)count));
  }
  void run() override { algo->run(); }
  float* result() override { return buf.data(); }
  void fillForCheck(int rank) override {
    peers_fill_input(buf.data(), buf.size(), rank);
  }
  // In-place: repeated sums of a non-zero pattern would grow without
  // bound (eventually inf). Zeros keep the values fixed; float add costs
  // the same for 0 as for any normal number.
  void fillForTiming(int) override { std::fill(buf.begin(), buf.end(), 0.0f); }
};

std::unique_ptr<Runner> makeRunner(const std::string& algo,
                                   const std::shared_ptr<gloo::Context>& ctx,
                                   size_t count, const Config& cfg) {
  std::chrono::milliseconds timeout(cfg.timeout_sec * 1000L);
  if (algo == "default")
    return std::unique_ptr<Runner>(new OptionsRunner(
        ctx, count, gloo::AllreduceOptions::Algorithm::UNSPECIFIED, timeout));
  if (algo == "bcube")
    return std::unique_ptr<Runner>(new OptionsRunner(
        ctx, count, gloo::AllreduceOptions::Algorithm::BCUBE, timeout));
  if (algo == "ring")
    return std::unique_ptr<Runner>(
        new LegacyRunner<gloo::AllreduceRing>(ctx, count));
  if (algo == "ringchunked")
    return std::unique_ptr<Runner>(
        new LegacyRunner<gloo::AllreduceRingChunked>(ctx, count));
  if (algo == "hd")
    return std::unique_ptr<Runner>(
        new LegacyRunner<gloo::AllreduceHalvingDoubling>(ctx, count));
  return nullptr;
}

int64_t sumAcrossRanks(const std::shared_ptr<gloo::Context>& ctx, int64_t v) {
  int64_t in = v, out = 0;
  gloo::AllreduceOptions o(ctx);
  o.setInput(&in, 1);
  o.setOutput(&out, 1);
  o.setReduceFunction(
      static_cast<void (*)(void*, const void*, const void*, size_t)>(
          &gloo::sum<int64_t>));
  o.setTag(kTagWrong);
  gloo::allreduce(o);
  return out;
}

int64_t broadcastFromRoot(const std::shared_ptr<gloo::Context>& ctx,
                          int64_t v) {
  int64_t buf = v;
  gloo::BroadcastOptions o(ctx);
  if (ctx->rank == 0) o.setInput(&buf, 1);
  o.setOutput(&buf, 1);
  o.setRoot(0);
  o.setTag(kTagIters);
  gloo::broadcast(o);
  return buf;
}

int runRank(const Config& cfg) {
  gloo::transport::tcp::attr attr;
  attr.hostname = cfg.host;
  attr.ai_family = AF_INET;
  auto dev = gloo::transport::tcp::CreateDevice(attr);

  auto fileStore = gloo::rendezvous::FileStore(cfg.store);
  auto store = gloo::rendezvous::PrefixStore(cfg.prefix, fileStore);
  auto ctx = std::make_shared<gloo::rendezvous::Context>(cfg.rank, cfg.nranks);
  ctx->setTimeout(std::chrono::milliseconds(cfg.timeout_sec * 1000L));
  ctx->connectFullMesh(store, dev);
  std::shared_ptr<gloo::Context> gctx = ctx;

  int status = 0;
  for (const auto& algo : cfg.algos) {
    for (size_t bytes : cfg.sizes) {
      const size_t count = bytes / sizeof(float);
      auto r = makeRunner(algo, gctx, count, cfg);

      // 1. Verification (untimed).
      long wrong = -1;
      if (cfg.check) {
        r->fillForCheck(cfg.rank);
        r->run();
        int64_t local = peers_count_wrong(r->result(), count, cfg.nranks);
        wrong = (long)sumAcrossRanks(gctx, local);
        if (wrong != 0 && cfg.rank == 0) {
          fprintf(stderr,
                  "gloo_allreduce: %s bytes=%zu: %ld wrong elements "
                  "(summed over ranks)\n",
                  implName(algo), bytes, wrong);
          status = 2;
        }
      }

      // 2. Warmup (fixed count; rank 0 times it to size the timed loop).
      r->fillForTiming(cfg.rank);
      int nwarm = peers_warmup_iters(bytes);
      std::vector<double> warm(nwarm);
      for (int i = 0; i < nwarm; i++) {
        double t0 = peers_now_sec();
        r->run();
        warm[i] = peers_now_sec() - t0;
      }
      long iters = 0;
      if (cfg.rank == 0)
        iters = peers_timed_iters(peers_median(warm.data(), warm.size()),
                                  cfg.target_sec, cfg.min_iters,
                                  cfg.max_iters);
      iters = (long)broadcastFromRoot(gctx, iters);

      // 3. Timed: back-to-back, each iteration timed on its own.
      std::vector<double> t(iters);
      for (long i = 0; i < iters; i++) {
        double t0 = peers_now_sec();
        r->run();
        t[i] = peers_now_sec() - t0;
      }
      if (cfg.rank == 0) {
        double mean = peers_mean(t.data(), t.size());
        double med = peers_median(t.data(), t.size());
        peers_print_json(stdout, implName(algo), cfg.nranks, bytes, med, mean,
                         wrong);
        if (cfg.verbose)
          peers_print_dist(stderr, implName(algo), bytes, t.data(), t.size());
      }
    }
  }

  // Do not tear down connections while a peer may still be inside its last
  // collective: a closed socket makes gloo fail that peer's pending op
  // ("Connection closed by peer"). Rendezvous through the store, which
  // does not depend on the pairs, before destroying the context.
  std::vector<std::string> doneKeys;
  for (int r = 0; r < cfg.nranks; r++)
    doneKeys.push_back("done/" + std::to_string(r));
  store.set(doneKeys[cfg.rank], std::vector<char>{'1'});
  store.wait(doneKeys, std::chrono::milliseconds(cfg.timeout_sec * 1000L));
  return status;
}

// Launcher: forward SIGINT/SIGTERM (e.g. from `timeout`) to the ranks.
std::vector<pid_t> gChildren;
void forwardSignal(int sig) {
  for (pid_t p : gChildren) kill(p, sig);
}

int rmEntry(const char* path, const struct stat*, int, struct FTW*) {
  remove(path);
  return 0;
}

void usage(const char* argv0) {
  fprintf(stderr,
          "usage: %s -n NRANKS [--rank R --store DIR] [options]\n"
          "  -n, --nranks N        number of ranks (required)\n"
          "  -r, --rank R          run only rank R (else fork all N ranks)\n"
          "  -s, --store DIR       FileStore directory (launcher: temp dir)\n"
          "  -p, --prefix P        store key prefix (default gccl-peers)\n"
          "  -H, --host ADDR       address to bind (default 127.0.0.1)\n"
          "  -a, --algo LIST       default,ring,ringchunked,hd,bcube\n"
          "                        (default: default)\n"
          "  -S, --sizes LIST      bytes, e.g. 8,64,4K,64M (default 8..16M x8, 64M)\n"
          "  -t, --target-sec S    timed seconds per size (default %.2f)\n"
          "  -m, --min-iters N     (default %d)\n"
          "  -M, --max-iters N     (default %d)\n"
          "  -T, --timeout-sec N   gloo op timeout (default 300)\n"
          "      --no-check        skip verification (wrong = -1)\n"
          "  -v, --verbose         per-size time distribution on stderr\n",
          argv0, PEERS_DEFAULT_TARGET_SEC, PEERS_DEFAULT_MIN_ITERS,
          PEERS_DEFAULT_MAX_ITERS);
}

std::vector<std::string> splitComma(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ','))
    if (!tok.empty()) out.push_back(tok);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  static struct option longopts[] = {
      {"nranks", required_argument, nullptr, 'n'},
      {"rank", required_argument, nullptr, 'r'},
      {"store", required_argument, nullptr, 's'},
      {"prefix", required_argument, nullptr, 'p'},
      {"host", required_argument, nullptr, 'H'},
      {"algo", required_argument, nullptr, 'a'},
      {"sizes", required_argument, nullptr, 'S'},
      {"target-sec", required_argument, nullptr, 't'},
      {"min-iters", required_argument, nullptr, 'm'},
      {"max-iters", required_argument, nullptr, 'M'},
      {"timeout-sec", required_argument, nullptr, 'T'},
      {"no-check", no_argument, nullptr, 'C'},
      {"verbose", no_argument, nullptr, 'v'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  int c;
  while ((c = getopt_long(argc, argv, "n:r:s:p:H:a:S:t:m:M:T:vh", longopts,
                          nullptr)) != -1) {
    switch (c) {
      case 'n': cfg.nranks = atoi(optarg); break;
      case 'r': cfg.rank = atoi(optarg); break;
      case 's': cfg.store = optarg; break;
      case 'p': cfg.prefix = optarg; break;
      case 'H': cfg.host = optarg; break;
      case 'a': cfg.algos = splitComma(optarg); break;
      case 'S': {
        size_t tmp[PEERS_MAX_SIZES];
        int n = peers_parse_size_list(optarg, tmp, PEERS_MAX_SIZES);
        if (n <= 0) {
          fprintf(stderr, "bad --sizes (need multiples of 4 bytes)\n");
          return 1;
        }
        cfg.sizes.assign(tmp, tmp + n);
        break;
      }
      case 't': cfg.target_sec = atof(optarg); break;
      case 'm': cfg.min_iters = atol(optarg); break;
      case 'M': cfg.max_iters = atol(optarg); break;
      case 'T': cfg.timeout_sec = atoi(optarg); break;
      case 'C': cfg.check = false; break;
      case 'v': cfg.verbose = true; break;
      default: usage(argv[0]); return c == 'h' ? 0 : 1;
    }
  }
  if (cfg.nranks < 1 || cfg.rank >= cfg.nranks || cfg.min_iters < 1 ||
      cfg.max_iters < cfg.min_iters) {
    usage(argv[0]);
    return 1;
  }
  for (const auto& a : cfg.algos) {
    if (!implName(a)) {
      fprintf(stderr, "unknown --algo %s\n", a.c_str());
      return 1;
    }
  }
  if (cfg.sizes.empty())
    cfg.sizes.assign(peers_default_sizes,
                     peers_default_sizes + PEERS_NDEFAULT_SIZES);

  if (cfg.rank >= 0) {
    if (cfg.store.empty()) {
      fprintf(stderr, "--store is required with --rank\n");
      return 1;
    }
    try {
      return runRank(cfg);
    } catch (const std::exception& e) {
      fprintf(stderr, "gloo_allreduce rank %d: %s\n", cfg.rank, e.what());
      return 3;
    }
  }

  // Launcher mode: private store dir, fork one process per rank.
  bool ownStore = false;
  if (cfg.store.empty()) {
    char tmpl[] = "/tmp/gccl-gloo-store-XXXXXX";
    if (!mkdtemp(tmpl)) {
      perror("mkdtemp");
      return 1;
    }
    cfg.store = tmpl;
    ownStore = true;
  }
  fflush(stdout);
  std::vector<pid_t>& pids = gChildren;
  pids.reserve(cfg.nranks);
  const pid_t launcher = getpid();
  for (int r = 0; r < cfg.nranks; r++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      for (pid_t p : pids) kill(p, SIGKILL);
      return 1;
    }
    if (pid == 0) {
      // Die with the launcher (e.g. if it is SIGKILLed).
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != launcher) _exit(1);
      Config rc = cfg;
      rc.rank = r;
      int st;
      try {
        st = runRank(rc);
      } catch (const std::exception& e) {
        fprintf(stderr, "gloo_allreduce rank %d: %s\n", r, e.what());
        st = 3;
      }
      fflush(stdout);
      fflush(stderr);
      _exit(st);
    }
    pids.push_back(pid);
  }
  signal(SIGINT, forwardSignal);
  signal(SIGTERM, forwardSignal);
  int status = 0;
  for (size_t i = 0; i < pids.size(); i++) {
    int ws = 0;
    pid_t done = wait(&ws);
    if (done < 0) {
      if (errno == EINTR) {
        i--;
        continue;
      }
      break;
    }
    int rc = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    if (rc != 0 && status == 0) {
      status = rc;
      // One rank failed: the others would block until the gloo timeout.
      for (pid_t p : pids)
        if (p != done) kill(p, SIGTERM);
    }
  }
  if (ownStore) nftw(cfg.store.c_str(), rmEntry, 16, FTW_DEPTH | FTW_PHYS);
  return status;
}
