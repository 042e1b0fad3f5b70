// FaultInjectionEnv: an Env for tests that simulates power cuts and injects
// I/O errors. Modelled on LevelDB's db/fault_injection_test.cc, but for files
// overwritten in place (the log is a ring, the home copy is rewritten), so it
// tracks 512-byte sectors rather than appended tails.
//
// Model (what is "durable"):
//  - File contents. The first time a sector is dirtied after a File::Sync()
//    (WriteAt, a shrinking Truncate, PunchHole), its contents as of that sync
//    are read from the wrapped file and remembered, together with the file's
//    size at the sync. A successful File::Sync() makes the file's current
//    contents and size durable (forgets the record). Allocate and a growing
//    Truncate only change the size: they are undone by reverting the size.
//  - Directory entries. A file created through OpenFile(kCreate*) and a Rename
//    are durable only after Dir::Sync() of that directory; until then
//    PowerCut() undoes them (the created file is removed; the rename is
//    reverted and a file it replaced is restored with its synced contents).
//    SIMPLIFICATION: Remove is durable at once (never undone). Lock files
//    created by LockFile are not tracked (they survive a cut).
//  - The view between cuts is the page cache: reads see every write.
//
// PowerCut(mode, seed, dir_prefix) reverts what was not durable, on disk,
// through the wrapped Env, for files under dir_prefix ("" = everything):
//  - kDropUnsynced: every unsynced sector and size reverts.
//  - kKeepRandomSubset: each unsynced sector independently keeps its current
//    contents or reverts (coin flips from `seed`, in path/sector order, so a
//    seed reproduces the outcome). The size becomes the synced size grown to
//    cover the highest kept sector (never past the current size); an unsynced
//    shrink is kept or undone by one more coin flip.
//  - kTornLastWrite: the last WriteAt in scope keeps a prefix of its sectors
//    (0..all, chosen by `seed`); every other unsynced sector reverts (earlier
//    unsynced writes are DROPPED, not kept at random). A kept sector keeps its
//    current contents, which for a partially covered sector include earlier
//    unsynced bytes of that sector.
// Then un-synced directory operations in scope are undone (newest first),
// every File, Dir and FileLock handed out for a path in scope becomes dead
// (each method returns IoError(EIO, "simulated power cut")), their locks are
// released, and the state in scope starts afresh: the test reopens the
// volume through this same env.
//
// Fault injection: InjectFault(rule) makes operations on paths under
// rule.path_prefix fail with rule.err. Rules are checked in the order given;
// the first that fires wins and the rules after it do not see the operation.
// A failed operation does nothing, except File::Sync (fsyncgate, DESIGN.md 7):
// the file's unsynced sectors and size revert to their synced state at once
// (the kernel dropped the dirty pages), so a later Sync succeeds with the
// data gone unless the caller rewrote it.
//
// Thread-safety: all methods are thread-safe. One mutex serializes every
// operation (including the wrapped I/O), which keeps the bookkeeping exact
// and is fine for tests. The env must outlive every handle it hands out.
//
// Cost: a record of up to 512 bytes per dirtied sector (all-zero sectors are
// stored as a flag), so truncating or punching a huge range without a sync in
// between costs memory; fine at test sizes.
#pragma once

#include <cerrno>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "util/env.h"
#include "util/thread_annotations.h"

namespace boostvol::test {

enum class PowerCutMode { kDropUnsynced, kKeepRandomSubset, kTornLastWrite };

// Which operations a FaultRule matches.
enum class FaultOp {
  kRead,   // File::ReadAt
  kWrite,  // File::WriteAt, Truncate, Allocate, PunchHole
  kSync,   // File::Sync, Dir::Sync
  kOpen,   // Env::OpenDir, Dir::OpenFile, Dir::LockFile
  kDirOp,  // Dir::Rename, Dir::Remove
  kAny,    // all of the above, plus File::Stat, Dir::Stat, Dir::Exists
};

struct FaultRule {
  // A directory or file path; matches that path and everything under it
  // (component-wise: "/a/b" matches "/a/b" and "/a/b/c", not "/a/bc").
  // "" matches every path. Paths are the dir path given to OpenDir (trailing
  // '/' stripped) + "/" + name; Rename matches its source path.
  std::string path_prefix;
  FaultOp op = FaultOp::kAny;
  int err = EIO;
  // Lets the first `skip` matching operations through.
  uint64_t skip = 0;
  // Then fails at most this many (-1: no limit).
  int64_t count = -1;
  // Each candidate fails with this probability (drawn from `seed`).
  double probability = 1.0;
  uint64_t seed = 1;
};

struct FaultCounters {
  uint64_t matched = 0;  // operations that matched the rule (path and op)
  uint64_t fired = 0;    // of those, how many were failed
};

struct PowerCutReport {
  uint64_t sectors_reverted = 0;
  uint64_t sectors_kept = 0;
  uint64_t files_resized = 0;
  uint64_t dir_ops_undone = 0;
  uint64_t handles_killed = 0;
};

class FaultInjectionEnv final : public Env {
 public:
  static constexpr uint64_t kSectorSize = 512;

  // `base` is not owned and must outlive this env; normally Env::Posix().
  explicit FaultInjectionEnv(Env* base);
  ~FaultInjectionEnv() override;
  FaultInjectionEnv(const FaultInjectionEnv&) = delete;
  FaultInjectionEnv& operator=(const FaultInjectionEnv&) = delete;

  Status OpenDir(const std::string& path, std::unique_ptr<Dir>* dir) override BV_EXCLUDES(mu_);

  // Simulates losing power for everything under dir_prefix ("" = the whole
  // machine). Fails only if the wrapped env fails while reverting.
  Status PowerCut(PowerCutMode mode, uint64_t seed, const std::string& dir_prefix = "",
                  PowerCutReport* report = nullptr) BV_EXCLUDES(mu_);

  // Returns the rule's id, for Counters().
  int InjectFault(const FaultRule& rule) BV_EXCLUDES(mu_);
  // Removes every rule (ids are not reused; Counters() of a removed rule
  // still answers).
  void ClearFaults() BV_EXCLUDES(mu_);
  FaultCounters Counters(int rule_id) const BV_EXCLUDES(mu_);

  // Number of 512-byte sectors of `path` (a full file path) not yet made
  // durable by a Sync; 0 for an unknown file. For assertions in tests.
  uint64_t UnsyncedSectors(const std::string& path) const BV_EXCLUDES(mu_);

 private:
  class FaultFile;
  class FaultDir;
  class FaultLock;
  struct Handle;
  struct FileState;
  struct DirOp;
  struct Rule;

  // Fails the operation if a rule fires; counts matches.
  Status CheckFault(FaultOp op, const std::string& path, const char* what) BV_REQUIRES(mu_);
  // The shared state of the file at `path`, created on first use.
  std::shared_ptr<FileState> StateFor(const std::string& dir, const std::string& name, uint64_t size_now)
      BV_REQUIRES(mu_);
  // Opens the file of `st` read-write through the wrapped env (for reverting).
  Status OpenBase(const FileState& st, std::unique_ptr<File>* file) BV_REQUIRES(mu_);
  std::shared_ptr<Handle> NewHandle(const std::string& path) BV_REQUIRES(mu_);
  // Remembers the synced contents of sectors [first, last] of `st` if not yet.
  Status SaveSectors(FileState* st, File* base, uint64_t first, uint64_t last) BV_REQUIRES(mu_);
  // Puts every unsynced sector of `st` back to its synced contents and size
  // (used by the fsyncgate model).
  Status RevertAll(FileState* st) BV_REQUIRES(mu_);
  Status CutFile(FileState* st, PowerCutMode mode, bool is_last_writer, std::mt19937_64* rng,
                 PowerCutReport* report) BV_REQUIRES(mu_);
  Status UndoDirOp(const DirOp& op, PowerCutReport* report) BV_REQUIRES(mu_);

  Env* const base_;
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<FileState>> files_ BV_GUARDED_BY(mu_);  // by full path
  std::vector<DirOp> dir_ops_ BV_GUARDED_BY(mu_);                               // unsynced, oldest first
  std::vector<std::weak_ptr<Handle>> handles_ BV_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Rule>> rules_ BV_GUARDED_BY(mu_);    // active, in order
  std::map<int, FaultCounters> counters_ BV_GUARDED_BY(mu_);       // by rule id
  int next_rule_id_ BV_GUARDED_BY(mu_) = 1;
  uint64_t write_seq_ BV_GUARDED_BY(mu_) = 0;
};

}  // namespace boostvol::test
