#pragma once
// Datasets and a batch loader. A dataset answers size() and get(i); the loader
// shuffles with a seed, batches, augments (random crop with zero padding,
// horizontal flip), normalises, and prepares the next batches on a background
// thread. Shuffling and augmentation draw from counter-based streams keyed by
// (seed, epoch, index), so a run's batches do not depend on timing or on where it
// was resumed.
#include <algorithm>
#include <memory>
#include <numeric>
#include <vector>

#include "nanode/core/rng.hpp"
#include "nanode/tensor.hpp"
#include "nanode/data/prefetch.hpp"
#include "nanode/data/readers.hpp"
#include "nanode/data/shard.hpp"

namespace nanode::data {

struct Example {
  Tensor image;  ///< float32 [C, H, W] in [0, 1]
  int32_t label;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Example get(int64_t i) const = 0;
  /// Every image's [C, H, W] and the number of classes.
  virtual std::vector<int64_t> image_shape() const = 0;
  virtual int64_t classes() const = 0;
};

/// Labelled uint8 images held in memory.
class ImageDataset : public Dataset {
 public:
  explicit ImageDataset(ImageSet s) : s_(std::move(s)) {
    NANODE_CHECK(s_.n > 0 && static_cast<int64_t>(s_.images.size()) == s_.n * s_.c * s_.h * s_.w &&
                     static_cast<int64_t>(s_.labels.size()) == s_.n,
                 "ImageDataset: ", s_.n, " images of ", s_.c, "x", s_.h, "x", s_.w, " need ", s_.n * s_.c * s_.h * s_.w,
                 " bytes and ", s_.n, " labels; got ", s_.images.size(), " and ", s_.labels.size());
  }
  int64_t size() const override { return s_.n; }
  std::vector<int64_t> image_shape() const override { return {s_.c, s_.h, s_.w}; }
  int64_t classes() const override { return s_.classes; }
  Example get(int64_t i) const override {
    NANODE_CHECK(i >= 0 && i < s_.n, "ImageDataset::get: index ", i, " outside [0, ", s_.n, ")");
    Tensor t = Tensor::empty(Shape{s_.c, s_.h, s_.w});
    const int64_t per = s_.c * s_.h * s_.w;
    const uint8_t* src = pixels(i);
    float* dst = t.data<float>();
    for (int64_t k = 0; k < per; ++k) dst[k] = static_cast<float>(src[k]) * (1.0f / 255.0f);
    return {t, s_.labels[static_cast<size_t>(i)]};
  }
  const uint8_t* pixels(int64_t i) const { return s_.images.data() + i * s_.c * s_.h * s_.w; }
  int32_t label(int64_t i) const { return s_.labels[static_cast<size_t>(i)]; }
  const ImageSet& set() const { return s_; }

 private:
  ImageSet s_;
};

struct LoaderOptions {
  int64_t batch_size = 128;
  bool shuffle = true;
  bool drop_last = false;
  uint64_t seed = 0;
  int64_t crop_padding = 0;  ///< random crop of the original size from the zero-padded image
  bool hflip = false;        ///< horizontal flip with probability 1/2
  std::vector<float> mean, stddev;  ///< per channel, applied after augmentation (empty: none)
  int prefetch = 2;          ///< batches prepared ahead on the background thread (0: none)
  /// Data-parallel sharding (nanode::dist): this process is `rank` of `world`.
  /// Every rank draws the same permutation of each epoch; global batch b holds
  /// the samples one process with batch_size x world would put in its batch b,
  /// and rank r takes the r-th contiguous share of it (batch_size each; a last,
  /// partial batch is split as evenly as it goes, the first ranks taking one more,
  /// so a rank may get none). Batch::global_count says how many the global batch
  /// holds, for weighting each rank's mean loss.
  int rank = 0, world = 1;
  /// Instead: whole batches of batch_size, rank r taking batches r, r + world, ...
  /// (evaluation, where each batch's composition must be that of one process).
  bool whole_batches_by_rank = false;
};

struct Batch {
  Tensor images;  ///< float32 [B, C, H, W]
  Tensor labels;  ///< int32 [B]
  int64_t index = 0;
  int64_t global_count = 0;  ///< images in the global batch over all ranks (B in one process)
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> ds, LoaderOptions o) : ds_(std::move(ds)), o_(std::move(o)) {
    NANODE_CHECK(ds_ && ds_->size() > 0, "DataLoader: empty dataset");
    NANODE_CHECK(o_.batch_size > 0, "DataLoader: batch size must be positive, got ", o_.batch_size);
    NANODE_CHECK(o_.crop_padding >= 0, "DataLoader: crop padding must be >= 0, got ", o_.crop_padding);
    NANODE_CHECK(o_.prefetch >= 0, "DataLoader: prefetch must be >= 0, got ", o_.prefetch);
    const auto shape = ds_->image_shape();
    NANODE_CHECK(o_.mean.size() == o_.stddev.size() &&
                     (o_.mean.empty() || static_cast<int64_t>(o_.mean.size()) == shape[0]),
                 "DataLoader: mean and stddev need one value per channel (", shape[0], "), got ", o_.mean.size(),
                 " and ", o_.stddev.size());
    for (float s : o_.stddev) NANODE_CHECK(s > 0, "DataLoader: stddev must be positive, got ", s);
    shard_ = BatchSharding{o_.batch_size, o_.rank, o_.world, o_.whole_batches_by_rank, o_.drop_last};
    shard_.check("DataLoader");
  }
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  /// Batches this rank takes per epoch (the global batches, unless
  /// whole_batches_by_rank).
  int64_t batches_per_epoch() const { return shard_.batches(ds_->size()); }
  /// Images in a global batch: batch_size x world (batch_size alone for
  /// whole_batches_by_rank).
  int64_t global_batch_size() const { return shard_.global_batch_size(); }
  const Dataset& dataset() const { return *ds_; }

  /// The sample order of `epoch`: a permutation drawn from (seed, epoch), or 0..n-1.
  std::vector<int64_t> order(int64_t epoch) const {
    std::vector<int64_t> idx(static_cast<size_t>(ds_->size()));
    std::iota(idx.begin(), idx.end(), int64_t{0});
    if (o_.shuffle) {
      Generator g(stream_seed(epoch, 0x5348554646ull));
      for (size_t i = idx.size() - 1; i > 0; --i) std::swap(idx[i], idx[static_cast<size_t>(g.randint(0, static_cast<int64_t>(i) + 1))]);
    }
    return idx;
  }

  /// Starts an epoch; batches then come from next() until it returns false.
  void start_epoch(int64_t epoch) {
    prefetch_.stop();  // before the fields its thread reads change
    epoch_ = epoch;
    order_ = order(epoch);
    started_ = true;
    prefetch_.start(batches_per_epoch(), o_.prefetch, [this](int64_t k) { return fill_batch(shard_.global_index(k)); });
  }

  bool next(Batch& out) {
    NANODE_CHECK(started_, "DataLoader::next: call start_epoch(epoch) first");
    HostBatch hb;
    if (!prefetch_.take(hb)) return false;
    out = to_batch(hb);
    return true;
  }

  /// Builds this rank's batch k of the current epoch (deterministic in seed, epoch and k).
  Batch make_batch(int64_t b) const {
    NANODE_CHECK(started_, "DataLoader::make_batch: call start_epoch(epoch) first");
    NANODE_CHECK(b >= 0 && b < batches_per_epoch(), "DataLoader::make_batch: batch ", b, " outside [0, ",
                 batches_per_epoch(), ")");
    return to_batch(fill_batch(shard_.global_index(b)));
  }

 private:
  /// A batch in plain host memory: the background thread fills these, and the
  /// consumer makes the tensors, so for in-memory image sets every tensor
  /// allocation (and the allocator's peak-memory figures) happens on the training
  /// thread.
  struct HostBatch {
    int64_t index = 0, count = 0, global_count = 0;
    std::vector<float> images;
    std::vector<int32_t> labels;
  };

  Batch to_batch(const HostBatch& h) const {
    const auto shape = ds_->image_shape();
    Batch out;
    out.index = h.index;
    out.global_count = h.global_count;
    out.images = Tensor::from_vector<float>(h.images, Shape{h.count, shape[0], shape[1], shape[2]});
    out.labels = Tensor::from_vector<int32_t>(h.labels, Shape{h.count});
    return out;
  }

  HostBatch fill_batch(int64_t b) const {
    const auto shape = ds_->image_shape();
    const int64_t C = shape[0], H = shape[1], W = shape[2], n = ds_->size();
    const BatchSharding::Range share = shard_.range(b, n);  // this rank's share of global batch b
    const int64_t begin = share.begin, B = share.count;
    HostBatch out;
    out.index = b, out.count = B, out.global_count = share.global_count;
    out.images.resize(static_cast<size_t>(B * C * H * W));
    out.labels.resize(static_cast<size_t>(B));
    float* img = out.images.data();
    int32_t* lab = out.labels.data();
    const Generator aug(stream_seed(epoch_, 0x4155474d454e54ull));
    const auto* fast = dynamic_cast<const ImageDataset*>(ds_.get());
    for (int64_t k = 0; k < B; ++k) {
      const int64_t i = order_[static_cast<size_t>(begin + k)];
      float* dst = img + k * C * H * W;
      // Each sample's draws: block i of the epoch's augmentation stream.
      const auto r = aug.block(static_cast<uint64_t>(i));
      const int64_t p = o_.crop_padding;
      const int64_t dy = p ? static_cast<int64_t>(r[0] % static_cast<uint32_t>(2 * p + 1)) - p : 0;
      const int64_t dx = p ? static_cast<int64_t>(r[1] % static_cast<uint32_t>(2 * p + 1)) - p : 0;
      const bool flip = o_.hflip && (r[2] & 1u);
      Tensor ex;
      const uint8_t* px = nullptr;
      if (fast) {
        px = fast->pixels(i);
        lab[k] = fast->label(i);
      } else {
        Example e = ds_->get(i);
        NANODE_CHECK((e.image.shape() == Shape{C, H, W}), "DataLoader: item ", i, " has shape ", e.image.shape(),
                     ", expected [", C, ", ", H, ", ", W, "]");
        ex = e.image.to(DType::Float32);
        lab[k] = e.label;
      }
      for (int64_t c = 0; c < C; ++c) {
        const float m = o_.mean.empty() ? 0.0f : o_.mean[static_cast<size_t>(c)];
        const float s = o_.stddev.empty() ? 1.0f : 1.0f / o_.stddev[static_cast<size_t>(c)];
        for (int64_t y = 0; y < H; ++y) {
          const int64_t sy = y + dy;
          for (int64_t x = 0; x < W; ++x) {
            const int64_t sx = (flip ? W - 1 - x : x) + dx;
            float v = 0.0f;
            if (sy >= 0 && sy < H && sx >= 0 && sx < W) {
              const int64_t at = (c * H + sy) * W + sx;
              v = px ? static_cast<float>(px[at]) * (1.0f / 255.0f) : ex.data<float>()[at];
            }
            dst[(c * H + y) * W + x] = (v - m) * s;
          }
        }
      }
    }
    return out;
  }

  uint64_t stream_seed(int64_t epoch, uint64_t salt) const {
    uint64_t z = o_.seed * 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(epoch) + 1) * 0xBF58476D1CE4E5B9ull ^ salt;
    z ^= z >> 31;
    return z * 0x94D049BB133111EBull;
  }

  std::shared_ptr<const Dataset> ds_;
  LoaderOptions o_;
  BatchSharding shard_;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  bool started_ = false;
  Prefetcher<HostBatch> prefetch_;  // last: stopped before the members its thread reads
};

}  // namespace nanode::data
