#include "train/stop_signal.h"

#include <unistd.h>

#include <csignal>

namespace prom::train {
namespace {

// A signal handler can only reach static storage; this is the one global of the trainer.
volatile std::sig_atomic_t g_received = 0;
struct sigaction g_old_int, g_old_term;

extern "C" void on_stop_signal(int sig) {
  if (g_received != 0) _exit(128 + sig);  // second signal: the user insists
  g_received = sig;
}

}  // namespace

StopSignal::StopSignal() {
  g_received = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // blocking reads in data workers resume instead of failing with EINTR
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
}

StopSignal::~StopSignal() {
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

int StopSignal::received() const { return g_received; }

}  // namespace prom::train
