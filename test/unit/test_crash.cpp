// Crash safety (issue 8): prom-train is killed with SIGKILL at random moments, many times, some of
// them while it writes a checkpoint. After every kill the newest checkpoint must load, every other
// checkpoint too, and the metrics must still parse; each next run resumes from it, and a final
// resumed run completes. Checkpoints survive because lib/io/atomic_file writes a temporary file,
// fsyncs it, renames it over the old one and fsyncs the directory.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/catch.h"
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "support/command.h"
#include "train/checkpoint.h"

extern char** environ;

using namespace prom::test;
namespace fs = std::filesystem;

namespace {

constexpr int kKills = 30;
constexpr uint32_t kSeed = 20261127;

// Starts prom-train with `args`, its output in `log`; returns its process id.
pid_t spawn_train(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> all = {bin("prom-train")};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("posix_spawn failed for prom-train");
  return pid;
}

// A checkpoint being written: the temporary file lib/io/atomic_file renames into place.
bool writing_checkpoint(const std::string& run_dir) {
  std::error_code ec;
  for (fs::directory_iterator it(run_dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename().string().find(".safetensors.tmp.") != std::string::npos) return true;
  return false;
}

size_t metrics_lines(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  size_t n = 0;
  for (std::string line; std::getline(in, line); ++n) {
    INFO("metrics.jsonl line " << n + 1 << ": " << line);
    CHECK(nlohmann::json::accept(line));
  }
  return n;
}

}  // namespace

TEST_CASE("SIGKILL at random moments: the newest checkpoint always loads and resume always works", "[crash]") {
  TempDir dir("crash");
  // 2 steps per epoch and a checkpoint after every epoch (last, best when it improves, and epoch_NNNN
  // every 5): several checkpoint writes per second, so many kills land in or near one.
  const std::string config = dir.write(
      "crash.yaml", "run: {name: crash, out_dir: " + dir.path() + "/runs, seed: 5, threads: 1, log_every: 1, save_every: 5}\n"
                    "model: {arch: mobilenet_v2, num_classes: 4, width_mult: 0.25, small_input: true, input_size: 16}\n"
                    "data:\n  synthetic: {enabled: true, samples: 32, eval_samples: 16, image_size: 16, classes: 4}\n"
                    "  eval_transform: {resize: 16, crop: 16}\n"
                    "train: {epochs: 100000, batch_size: 16}\n"
                    "optim: {name: sgd, lr: 0.01}\nschedule: {name: constant}\n");
  const std::string run_dir = dir.path() + "/runs/crash";
  const std::string last = run_dir + "/last.safetensors";
  const std::string log = dir.file("train.log");
  std::mt19937 rng(kSeed);
  std::uniform_int_distribution<int> delay_ms(50, 2500);

  int kills = 0, during_write = 0, before_first_checkpoint = 0;
  int64_t newest_epoch = 0;
  for (int k = 0; k < kKills; ++k) {
    const bool resume = fs::exists(last);
    const pid_t pid = resume ? spawn_train({"--resume", run_dir}, log) : spawn_train({"--config", config}, log);
    // Every third kill waits for a checkpoint write to start; the others land anywhere, start-up included.
    const bool aim_at_write = k % 3 == 2;
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + std::chrono::milliseconds(aim_at_write ? 20000 : delay_ms(rng));
    bool in_write = false;
    while (std::chrono::steady_clock::now() < deadline) {
      if (aim_at_write && writing_checkpoint(run_dir)) break;
      std::this_thread::sleep_for(std::chrono::microseconds(aim_at_write ? 200 : 2000));
    }
    in_write = writing_checkpoint(run_dir);
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::ifstream in(log);
    const std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    INFO("kill " << k + 1 << (resume ? " (resumed run)" : " (fresh run)") << "; prom-train output so far:\n" << output);
    // Killed, not finished or failed on its own.
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(WTERMSIG(status) == SIGKILL);
    ++kills;
    during_write += in_write ? 1 : 0;
    if (!fs::exists(last)) {
      ++before_first_checkpoint;
      continue;
    }
    // The newest checkpoint loads, and training never went backwards.
    prom::train::Checkpoint c = prom::train::load_checkpoint(last);
    CHECK(c.progress.epoch >= newest_epoch);
    CHECK(c.progress.iteration == c.progress.epoch * 2);
    newest_epoch = c.progress.epoch;
    // So does every other checkpoint of the run.
    for (const auto& e : fs::directory_iterator(run_dir)) {
      const std::string name = e.path().filename().string();
      if (name[0] == '.' || e.path().extension() != ".safetensors") continue;
      INFO(name);
      CHECK_NOTHROW(prom::train::load_checkpoint(e.path().string()));
    }
    metrics_lines(run_dir);
  }

  // A final resume runs to its (new) end; the real loader in prom-eval reads the result.
  REQUIRE(fs::exists(last));
  const int64_t end_epoch = prom::train::load_checkpoint(last).progress.epoch + 2;
  auto final_run = run_command(bin("prom-train") + " --resume " + run_dir + " --set train.epochs=" + std::to_string(end_epoch));
  INFO(final_run.output);
  REQUIRE(final_run.exit_code == 0);
  CHECK(prom::train::load_checkpoint(last).progress.epoch == end_epoch);
  auto eval = run_command(bin("prom-eval") + " --checkpoint " + last);
  INFO(eval.output);
  CHECK(eval.exit_code == 0);
  metrics_lines(run_dir);
  // The temporary files of killed writers are gone: the resumed runs removed them.
  CHECK_FALSE(writing_checkpoint(run_dir));

  std::printf("crash test: %d SIGKILLs survived (%d during a checkpoint write, %d before the first checkpoint); "
              "the final resume ran epochs %lld-%lld\n",
              kills, during_write, before_first_checkpoint, static_cast<long long>(end_epoch - 1),
              static_cast<long long>(end_epoch));
  CHECK(kills == kKills);
  CHECK(during_write >= kKills / 4);
}
