#pragma once
// Items 0 .. count-1 made in order on a background thread, at most `depth` ahead
// of the consumer: what the data loaders use to prepare the next batches while a
// training step runs. With depth 0 take() makes each item itself. An exception in
// make() reaches the consumer at the item it happened on.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

namespace nanode::data {

template <class Item>
class Prefetcher {
 public:
  using Make = std::function<Item(int64_t)>;
  Prefetcher() = default;
  ~Prefetcher() { stop(); }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  /// Starts over (stopping any earlier run) with items 0 .. count-1.
  void start(int64_t count, int depth, Make make) {
    stop();
    make_ = std::move(make);
    count_ = count, depth_ = depth, next_ = 0;
    queue_.clear();
    done_ = false, error_ = nullptr;
    if (depth_ > 0) worker_ = std::thread([this] { produce(); });
  }

  /// The next item, or false when all were taken.
  bool take(Item& out) {
    if (depth_ == 0) {
      if (next_ >= count_) return false;
      out = make_(next_++);
      return true;
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !queue_.empty() || done_; });
    if (queue_.empty()) {
      if (error_) std::rethrow_exception(error_);
      return false;
    }
    out = std::move(queue_.front());
    queue_.pop_front();
    cv_.notify_all();
    return true;
  }

  /// Stops the background thread (items not taken are dropped).
  void stop() {
    if (!worker_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      cv_.notify_all();
    }
    worker_.join();
    stopping_ = false;
  }

 private:
  void produce() {
    try {
      for (int64_t i = 0; i < count_; ++i) {
        {
          std::unique_lock<std::mutex> lock(mu_);
          cv_.wait(lock, [&] { return static_cast<int>(queue_.size()) < depth_ || stopping_; });
          if (stopping_) break;
        }
        Item item = make_(i);
        std::lock_guard<std::mutex> lock(mu_);
        queue_.push_back(std::move(item));
        cv_.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }

  Make make_;
  int64_t count_ = 0, next_ = 0;
  int depth_ = 0;
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool done_ = false, stopping_ = false;
  std::exception_ptr error_;
};

}  // namespace nanode::data
