// Graceful stop on SIGINT/SIGTERM (Ctrl-C, cluster pre-emption): the handler only records the
// signal; the training loop polls it after each step (data-parallel ranks agree on it at the next
// metrics read, every run.log_every steps, and after each epoch), writes a resumable checkpoint and
// exits 128 + signal (130, 143). A second signal exits at once, without a checkpoint.
#pragma once

namespace prom::train {

// Installs the handlers for its lifetime and restores the previous ones afterwards.
class StopSignal {
 public:
  StopSignal();
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;
  // The signal received (SIGINT or SIGTERM), or 0.
  int received() const;
};

}  // namespace prom::train
