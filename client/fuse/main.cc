// rangefs-fuse: mounts a rangefs cluster; one mount is one client node.
//
//   rangefs-fuse CLUSTER MOUNTPOINT [-f] [-d] [-s] [-o OPTION[,OPTION...]]
//
// CLUSTER is a cluster configuration file or its text (the same one every
// rangefs binary reads). Options: FUSE's own (fsname=NAME,
// default_permissions, allow_other, ...) and rangefs's: node=NAME,
// cache_mb=N, kernel_cache=0|1, readahead_kb=N, create_ahead=0|1 (a create
// returns before the metadata server has it), name_cache=0|1 (the kernel
// keeps names and their absence under the directory's lock; needs the
// kernel cache and Linux 6.16), max_background=N (the kernel's limit of
// background requests; default 256), max_threads=N (worker threads at
// most; default 512), pipe_fills=0|1 (cold READs go from the data servers
// to the kernel through a pipe, spliced: default 1), lease_ms=N (the
// node's lease at lockd: how long after this daemon dies its locks stay
// held; 500 to 600000, default 10000), fault_control=0|1 (root may set
// fault rules inside the node through an ioctl, rangefs_ioctl.h: for the
// race suite; default 0), acl or noacl (POSIX ACLs checked by the kernel
// and kept by the metadata server; default acl), the VFS flags ro, rw,
// noatime, relatime, strictatime, nodiratime (libfuse refuses some:
// they are set on the mount once it is up), remount (apply the VFS
// options given to the mount at MOUNTPOINT and exit), log=FILE (where a
// daemonized mount logs; default /dev/null). Without -f the daemon detaches
// once the mount is up, and the command fails with the reason if the cluster is
// unreachable or the mount fails. SIGTERM, SIGINT or unmounting stop it
// cleanly: dirty data is written back, locks are given back, the session is
// closed.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "client/fuse/fuse_ops.h"
#include "client/fuse/mount_flags.h"
#include "client/rangefs.h"
#include "common/cluster_config.h"
#include "common/fault_injection.h"
#include "common/log.h"
#include "common/process.h"

// libfuse 3.12's loop entry point, which takes a thread limit (our
// FUSE_USE_VERSION 34 headers name the older one).
extern "C" int fuse_session_loop_mt_312(struct fuse_session* se,
                                        struct fuse_loop_config* config);

namespace rangefs::fuse {
namespace {

// Interrupts the session loop's thread once the session has ended (Serve).
constexpr int kWakeSignal = SIGUSR2;

constexpr unsigned kMaxWorkers = 512;
constexpr int kKeyRemount = 1;
constexpr int kKeyVfs = 2;

struct Options {
  char* node = nullptr;
  char* log = nullptr;
  int cache_mb = 256;
  int kernel_cache = 1;  // File data through the kernel page cache.
  // The kernel's readahead on the mount: cold READs through pipes
  // (pipe_fills) each wait for their data server, so it keeps 32 of
  // them (512 KiB) in flight.
  int readahead_kb = 16384;
  int create_ahead = 1;    // ClientOptions::create_ahead.
  int name_cache = 1;      // KernelCache::EnableNames.
  int max_background = 0;  // Mount::max_background (0: its default).
  int pipe_fills = 1;      // Mount::pipe_fills.
  int lease_ms = 10000;    // ClientOptions::lease_ms.
  unsigned max_read = 0;   // FUSE's max_read (0: the kernel's limit).
  int fault_control = 0;   // Mount::fault_control.
  int acl = 1;             // Mount::acl.
  // -o remount: apply the VFS options to the mount and exit (mount.fuse3
  // runs the helper for `mount -o remount,...`).
  bool remount = false;
  std::string vfs;  // VFS options libfuse does not know, applied after.
  std::string all;  // Every -o option, for a remount.
  // Worker threads at most. Ours, not libfuse's max_threads (whose default
  // of 10 it cannot tell from a 10 asked for): a request waiting for the
  // node's locks keeps its worker, and every request the kernel sends
  // during a callback needs one.
  int max_threads = kMaxWorkers;
};

const fuse_opt kOpts[] = {
    {"node=%s", offsetof(Options, node), 0},
    {"log=%s", offsetof(Options, log), 0},
    {"cache_mb=%d", offsetof(Options, cache_mb), 0},
    {"kernel_cache=%d", offsetof(Options, kernel_cache), 0},
    {"readahead_kb=%d", offsetof(Options, readahead_kb), 0},
    {"create_ahead=%d", offsetof(Options, create_ahead), 0},
    {"name_cache=%d", offsetof(Options, name_cache), 0},
    {"max_background=%d", offsetof(Options, max_background), 0},
    {"max_threads=%d", offsetof(Options, max_threads), 0},
    {"pipe_fills=%d", offsetof(Options, pipe_fills), 0},
    {"lease_ms=%d", offsetof(Options, lease_ms), 0},
    {"max_read=%u", offsetof(Options, max_read), 0},
    {"fault_control=%d", offsetof(Options, fault_control), 0},
    {"acl", offsetof(Options, acl), 1},
    {"noacl", offsetof(Options, acl), 0},
    FUSE_OPT_KEY("remount", kKeyRemount),
    FUSE_OPT_KEY("relatime", kKeyVfs),
    FUSE_OPT_KEY("norelatime", kKeyVfs),
    FUSE_OPT_KEY("strictatime", kKeyVfs),
    FUSE_OPT_KEY("nostrictatime", kKeyVfs),
    FUSE_OPT_KEY("diratime", kKeyVfs),
    FUSE_OPT_KEY("nodiratime", kKeyVfs),
    FUSE_OPT_KEY("lazytime", kKeyVfs),
    FUSE_OPT_KEY("nolazytime", kKeyVfs),
    FUSE_OPT_END,
};

// Options of kOpts with a key: the VFS ones libfuse refuses are kept for
// after the mount; every -o option is noted for a remount.
int TakeOption(void* data, const char* arg, int key, fuse_args*) {
  auto* o = static_cast<Options*>(data);
  if (key == FUSE_OPT_KEY_NONOPT) return 1;
  o->all += std::string(arg) + ",";
  if (key == kKeyRemount) {
    o->remount = true;
    return 0;
  }
  if (key == kKeyVfs) {
    o->vfs += std::string(arg) + ",";
    return 0;
  }
  return 1;  // libfuse's, or one matched above.
}

struct Positional {
  std::string cluster;
  std::string mountpoint;
};

int TakePositional(void* data, const char* arg, int key, fuse_args*) {
  if (key != FUSE_OPT_KEY_NONOPT) return 1;  // Keep for libfuse.
  auto* p = static_cast<Positional*>(data);
  if (p->cluster.empty()) {
    p->cluster = arg;
    return 0;
  }
  if (p->mountpoint.empty()) {
    p->mountpoint = arg;
    return 1;  // libfuse's own parser takes the mount point.
  }
  fprintf(stderr, "rangefs-fuse: unexpected argument %s\n", arg);
  return -1;
}

void Usage() {
  fprintf(stderr,
          "usage: rangefs-fuse CLUSTER MOUNTPOINT [-f] [-d] [-s] "
          "[-o node=NAME,cache_mb=N,log=FILE,fsname=NAME,...]\n");
}

// Tells the waiting parent how the start went ("" = mounted).
void Report(int fd, const std::string& error) {
  if (fd < 0) {
    if (!error.empty()) fprintf(stderr, "rangefs-fuse: %s\n", error.c_str());
    return;
  }
  std::string msg = error.empty() ? "ok" : error;
  (void)!write(fd, msg.data(), msg.size());
  close(fd);
}

// The kernel reads ahead at most 128 KiB on a FUSE mount unless told
// otherwise, and the FUSE INIT reply can only lower it: cold sequential
// reads then wait a round trip per 128 KiB. Raise it through the mount's
// backing device (found in mountinfo: asking the mount itself would send
// us a request before we serve any).
void SetReadahead(const char* mountpoint, int kb) {
  if (kb <= 0) return;
  char real[PATH_MAX];
  if (realpath(mountpoint, real) == nullptr) return;
  const std::string dev = MountDevice(real);
  if (dev.empty()) return;
  std::ofstream ra("/sys/class/bdi/" + dev + "/read_ahead_kb");
  ra << kb << "\n";
  ra.flush();
  if (!ra) {
    RANGEFS_LOG(WARNING) << "cannot set the readahead of " << mountpoint
                         << " (bdi " << dev << ") to " << kb << " KiB";
  }
}

// Keeps mount->atime and mount->nodiratime at the mount's flags: read
// from /proc/self/mountinfo now and whenever the mount table changes
// (poll's POLLPRI), until *running is false.
void WatchMountFlags(const std::string& mountpoint, Mount* mount,
                     const std::atomic<bool>* running) {
  int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  while (*running) {
    MountFlags f;
    if (ReadMountFlags(mountpoint, &f)) {
      mount->atime = f.atime;
      mount->nodiratime = f.nodiratime;
    }
    if (fd < 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    pollfd p = {fd, POLLPRI, 0};
    if (poll(&p, 1, 200) > 0) lseek(fd, 0, SEEK_SET);
  }
  if (fd >= 0) close(fd);
}

int Serve(const ClusterConfig& config, const Options& opts, fuse_args* args,
          const fuse_cmdline_opts& cmd, int report_fd) {
  client::ClientOptions co;
  co.node_name = opts.node != nullptr ? opts.node : "fuse";
  co.cache_bytes = static_cast<uint64_t>(opts.cache_mb) << 20;
  co.create_ahead = opts.create_ahead != 0;
  co.lease_ms = static_cast<uint64_t>(opts.lease_ms);
  absl::StatusOr<std::unique_ptr<client::Client>> c =
      client::Client::Connect(config, co);
  if (!c.ok()) {
    Report(report_fd,
           "cannot reach the cluster: " + std::string(c.status().message()) +
               " (is `scripts/up` running, and is the "
               "configuration right?)");
    return 1;
  }
  // The kernel page cache needs a worker free for every request the
  // kernel may send while others wait for locks (kernel_cache.h); a
  // single-threaded mount goes without it.
  std::unique_ptr<KernelCache> kcache;
  if (opts.kernel_cache != 0 && !cmd.singlethread) {
    kcache = std::make_unique<KernelCache>();
  }
  Mount mount;
  mount.client = c->get();
  mount.kcache = kcache.get();
  if (opts.max_background > 0) {
    mount.max_background = std::min<unsigned>(opts.max_background, 65535);
  }
  const unsigned workers = opts.max_threads > 0 && opts.max_threads <= 100000
                               ? static_cast<unsigned>(opts.max_threads)
                               : kMaxWorkers;
  // Background requests waiting for locks must leave workers for the
  // requests that would let them go.
  mount.max_background =
      std::min(mount.max_background, std::max(1u, workers / 2));
  mount.pipe_fills = opts.pipe_fills != 0;
  mount.max_read = opts.max_read;
  mount.fault_control = opts.fault_control != 0;
  mount.acl = opts.acl != 0;
  // Each worker may keep two pipes (its own for cold READs, libfuse's for
  // spliced replies): four descriptors. Without them it reads the slower
  // way.
  struct rlimit files;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 &&
      files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  fuse_session* se =
      fuse_session_new(args, &Operations(), sizeof(fuse_lowlevel_ops), &mount);
  if (se == nullptr) {
    Report(report_fd, "bad FUSE options");
    return 1;
  }
  if (fuse_set_signal_handlers(se) != 0) {
    fuse_session_destroy(se);
    Report(report_fd, "cannot install signal handlers");
    return 1;
  }
  if (fuse_session_mount(se, cmd.mountpoint) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    Report(report_fd, std::string("cannot mount on ") + cmd.mountpoint +
                          " (does it exist, is it busy or already mounted?)");
    return 1;
  }
  if (!opts.vfs.empty()) {
    const std::string err = Remount(cmd.mountpoint, opts.vfs, /*bind=*/true);
    if (!err.empty()) RANGEFS_LOG(WARNING) << "mount options: " << err;
  }
  std::atomic<bool> mounted{true};
  std::thread flags_watch(
      [&] { WatchMountFlags(cmd.mountpoint, &mount, &mounted); });
  if (kcache != nullptr) {
    kcache->Attach(se);
    if (opts.name_cache != 0) kcache->EnableNames();
    (*c)->SetCacheAbove(kcache.get());
  }
  // The INIT reply lowers the readahead to what the kernel proposed:
  // raise it once the session loop has answered INIT.
  std::thread readahead([&mount, &cmd, &opts] {
    for (int i = 0; i < 100 && !mount.initialized; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    SetReadahead(cmd.mountpoint, opts.readahead_kb);
  });
  RANGEFS_LOG(INFO) << "mounted on " << cmd.mountpoint << " as node "
                    << co.node_name << ", session " << (*c)->session_id();
  Report(report_fd, "");
  // Once the session ends (signal, unmount), a worker blocked in a record
  // lock wait must give up, or the loop would wait for it forever.
  // And the loop must hear of it: a SIGTERM that lands on any other thread
  // (gRPC's, the node's pools) only sets the exit flag, and libfuse before
  // 3.18 wakes nobody for that (libfuse issue 997): the loop's thread slept
  // on until the next request, minutes or forever. So the loop's thread is
  // interrupted (a no-op signal, no SA_RESTART) until the loop returns.
  const pthread_t loop_thread = pthread_self();
  struct sigaction wake = {};
  wake.sa_handler = [](int) {};
  sigemptyset(&wake.sa_mask);
  sigaction(kWakeSignal, &wake, nullptr);
  std::atomic<bool> looping{true};
  std::thread watchdog([&] {
    while (looping && !fuse_session_exited(se)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    (*c)->CancelAllLockWaits();
    while (looping) {
      pthread_kill(loop_thread, kWakeSignal);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  int ret;
  if (cmd.singlethread) {
    ret = fuse_session_loop(se);
  } else {
    // libfuse 3.14's default of 10 workers is too few when requests wait
    // for cluster locks: the 3.12 loop API lifts it.
    fuse_loop_config* loop = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(loop, cmd.clone_fd);
    if (cmd.max_idle_threads != UINT_MAX) {
      fuse_loop_cfg_set_idle_threads(loop, cmd.max_idle_threads);
    }
    fuse_loop_cfg_set_max_threads(loop, workers);
    ret = fuse_session_loop_mt_312(se, loop);
    fuse_loop_cfg_destroy(loop);
  }
  looping = false;
  watchdog.join();
  readahead.join();
  mounted = false;
  flags_watch.join();
  {
    client::ClientStats st = (*c)->Stats();
    RANGEFS_LOG(INFO) << "node: " << st.page_hits << " page hits, "
                      << st.page_misses << " misses, " << st.map_calls
                      << " map calls (" << st.map_cache_hits << " cached), "
                      << st.lock_requests << " lock requests ("
                      << st.lock_local_hits << " local), " << st.lock_callbacks
                      << " callbacks, " << st.writeback_pages
                      << " pages written back, " << st.piped_fills
                      << " fills through pipes (" << st.pipe_fallbacks
                      << " fell back), " << st.meta_calls << " metadata calls, "
                      << st.creates_ahead << " creates sent ahead";
  }
  bool leak_session = false;
  if (kcache != nullptr) {
    KernelCache::Stats ks = kcache->stats();
    RANGEFS_LOG(INFO) << "kernel cache: " << ks.invalidations
                      << " invalidations, " << ks.notifications
                      << " notifications, " << ks.excluded
                      << " ranges in flight skipped, " << ks.abandoned
                      << " notifications left to finish alone, "
                      << ks.name_epochs << " dentry epochs, " << ks.size_stores
                      << " sizes stored (" << ks.sizes_given_up << " given up)";
    // Callbacks from here on (the client's shutdown) have no kernel cache
    // to tell: the unmount wrote its dirty pages back.
    (*c)->SetCacheAbove(nullptr);
    leak_session = !kcache->Shutdown();
  }
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  if (leak_session) {
    // A notification still runs with the session; the process ends soon.
    RANGEFS_LOG(WARNING) << "kernel cache notifications still running at exit";
    (void)kcache.release();
  } else {
    fuse_session_destroy(se);
  }
  c->reset();  // Writes back, gives the locks back, closes the session.
  RANGEFS_LOG(INFO) << "unmounted " << cmd.mountpoint;
  return ret == 0 ? 0 : 1;
}

int Main(int argc, char** argv) {
  fuse_args args = FUSE_ARGS_INIT(argc, argv);
  Options opts;
  Positional pos;
  fuse_cmdline_opts cmd = {};
  // libfuse's option parsing allocates; give it back on every way out.
  struct Cleanup {
    fuse_args* args;
    Options* opts;
    fuse_cmdline_opts* cmd;
    ~Cleanup() {
      fuse_opt_free_args(args);
      free(opts->node);
      free(opts->log);
      free(cmd->mountpoint);
    }
  } cleanup{&args, &opts, &cmd};
  if (fuse_opt_parse(&args, &opts, kOpts, TakeOption) != 0 ||
      fuse_opt_parse(&args, &pos, nullptr, TakePositional) != 0) {
    Usage();
    return 2;
  }
  // Shown as fuse.rangefs in /proc/mounts, so tools that mount by type
  // (mount -t fuse.rangefs) recognise it.
  fuse_opt_add_arg(&args, "-osubtype=rangefs");
  // A READ through a worker's pipe must fit in libfuse's splice pipe with
  // its header, and a pipe past /proc/sys/fs/pipe-max-size (1 MiB) needs
  // CAP_SYS_RESOURCE: READs of 512 KiB (the kernel's default is 1 MiB
  // here) go through pipes of 1 MiB. An explicit max_read stays. libfuse
  // wants it both as a mount option and from the init callback.
  if (opts.max_read == 0 && opts.pipe_fills != 0 && opts.kernel_cache != 0) {
    opts.max_read = 512 << 10;
  }
  if (opts.max_read > 0) {
    fuse_opt_add_arg(&args,
                     ("-omax_read=" + std::to_string(opts.max_read)).c_str());
  }
  if (fuse_parse_cmdline(&args, &cmd) != 0) {
    Usage();
    return 2;
  }
  if (cmd.show_help || cmd.show_version) {
    Usage();
    return 0;
  }
  if (pos.cluster.empty() || cmd.mountpoint == nullptr) {
    Usage();
    return 2;
  }
  if (opts.remount) {
    // The running daemon follows the new flags (WatchMountFlags).
    const std::string err = Remount(cmd.mountpoint, opts.all, /*bind=*/false);
    if (!err.empty()) {
      fprintf(stderr, "rangefs-fuse: %s\n", err.c_str());
      return 1;
    }
    return 0;
  }
  if (opts.lease_ms < 500 || opts.lease_ms > 600000) {
    fprintf(stderr,
            "rangefs-fuse: lease_ms=%d is out of range (500 to 600000)\n",
            opts.lease_ms);
    return 2;
  }
  absl::StatusOr<ClusterConfig> config = LoadClusterConfig(pos.cluster);
  if (!config.ok()) {
    fprintf(stderr, "rangefs-fuse: cluster configuration %s: %s\n",
            pos.cluster.c_str(),
            std::string(config.status().message()).c_str());
    return 2;
  }
  if (access("/dev/fuse", R_OK | W_OK) != 0) {
    fprintf(stderr,
            "rangefs-fuse: /dev/fuse is missing or not accessible (load the "
            "fuse module: modprobe fuse; in a container pass --device "
            "/dev/fuse and CAP_SYS_ADMIN)\n");
    return 1;
  }
  InitProgram("rangefs-fuse");
  // Client-side fault points (docs/client.md) for race tests.
  if (absl::Status s = LoadFaultsFromEnv(); !s.ok()) {
    fprintf(stderr, "rangefs-fuse: RANGEFS_FAULTS: %s\n",
            std::string(s.message()).c_str());
    return 2;
  }
  if (cmd.foreground) return Serve(*config, opts, &args, cmd, -1);
  // Detach before anything starts threads (gRPC does): the parent waits
  // for the child's report and exits with its verdict, so the command
  // returns once the mount is up, like other FUSE filesystems.
  int pipefd[2];
  if (pipe(pipefd) != 0) {
    perror("rangefs-fuse: pipe");
    return 1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("rangefs-fuse: fork");
    return 1;
  }
  if (pid > 0) {
    close(pipefd[1]);
    char buf[1024];
    ssize_t n = read(pipefd[0], buf, sizeof(buf) - 1);
    if (n <= 0) {
      fprintf(stderr, "rangefs-fuse: the daemon died while starting\n");
      return 1;
    }
    buf[n] = '\0';
    if (strcmp(buf, "ok") == 0) return 0;
    fprintf(stderr, "rangefs-fuse: %s\n", buf);
    return 1;
  }
  close(pipefd[0]);
  setsid();
  if (chdir("/") != 0) perror("chdir");
  int null = open("/dev/null", O_RDWR);
  int log = opts.log != nullptr
                ? open(opts.log, O_WRONLY | O_CREAT | O_APPEND, 0644)
                : null;
  if (null >= 0) dup2(null, 0);
  if (log >= 0) {
    dup2(log, 1);
    dup2(log, 2);
  }
  return Serve(*config, opts, &args, cmd, pipefd[1]);
}

}  // namespace
}  // namespace rangefs::fuse

int main(int argc, char** argv) { return rangefs::fuse::Main(argc, argv); }
