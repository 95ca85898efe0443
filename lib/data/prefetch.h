// A fixed pool of threads that runs the tasks 0..n-1 of one epoch at most `depth` ahead of the
// consumer and hands the results back in task order: a bounded prefetch queue whose output does not
// depend on the number of threads or on scheduling. Torch- and OpenCV-free.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace prom::data {

template <class Result>
class OrderedPrefetcher {
 public:
  using Task = std::function<Result(int64_t)>;

  // `thread_init` runs once at the start of each worker thread.
  OrderedPrefetcher(int threads, int depth, std::function<void()> thread_init = {}) : depth_(depth) {
    for (int i = 0; i < threads; ++i)
      threads_.emplace_back([this, thread_init] {
        if (thread_init) thread_init();
        work();
      });
  }
  ~OrderedPrefetcher() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      shutdown_ = true;
    }
    work_cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  OrderedPrefetcher(const OrderedPrefetcher&) = delete;
  OrderedPrefetcher& operator=(const OrderedPrefetcher&) = delete;

  // Starts a new run of `count` tasks; results of a previous run still in flight are discarded.
  void start(int64_t count, Task task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++generation_;
      task_ = std::make_shared<Task>(std::move(task));
      count_ = count;
      next_task_ = consumed_ = 0;
      ready_.clear();
    }
    work_cv_.notify_all();
  }

  // The next result in task order (blocking), or nullopt after the last. A task's exception is
  // rethrown here, in order.
  std::optional<Result> next() {
    std::unique_lock<std::mutex> lock(mu_);
    if (consumed_ >= count_) return std::nullopt;
    ready_cv_.wait(lock, [&] { return ready_.count(consumed_) > 0; });
    auto node = ready_.extract(consumed_);
    ++consumed_;
    lock.unlock();
    work_cv_.notify_all();
    if (node.mapped().error) std::rethrow_exception(node.mapped().error);
    return std::move(*node.mapped().value);
  }

 private:
  struct Slot {
    std::optional<Result> value;
    std::exception_ptr error;
  };

  void work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      work_cv_.wait(lock, [&] { return shutdown_ || (next_task_ < count_ && next_task_ < consumed_ + depth_); });
      if (shutdown_) return;
      const int64_t index = next_task_++;
      const uint64_t generation = generation_;
      std::shared_ptr<Task> task = task_;
      lock.unlock();
      Slot slot;
      try {
        slot.value.emplace((*task)(index));
      } catch (...) {
        slot.error = std::current_exception();
      }
      lock.lock();
      if (generation == generation_) {
        ready_[index] = std::move(slot);
        ready_cv_.notify_all();
      }
    }
  }

  const int64_t depth_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable work_cv_, ready_cv_;
  bool shutdown_ = false;
  uint64_t generation_ = 0;
  std::shared_ptr<Task> task_;
  int64_t count_ = 0, next_task_ = 0, consumed_ = 0;
  std::map<int64_t, Slot> ready_;
};

}  // namespace prom::data
