#pragma once
// Video data for the paper's second experiment (DESIGN.md §3):
//  - Moving MNIST from the standard file mnist_test_seq.npy (uint8 [T, N, H, W]),
//    split into train and test sequences by a seeded permutation;
//  - Stochastic Moving MNIST generated on the fly from any IDX image file (SVG's
//    rules: a 64x64 canvas, digits rescaled to 32x32, integer velocities in
//    [-4, 4], deterministic or stochastic bounces, summed and clipped at 1);
//    Debian's Fashion-MNIST makes it "Moving Fashion-MNIST";
//  - BAIR robot pushing in SVG's processed layout,
//    processed_data/{train,test}/<record>/<k>/<i>.png (30 frames of 64x64 RGB).
// A source gives sequences of frames in [0, 1]; VideoLoader batches them as float32
// [T, B, C, H, W], on a background thread, with every draw keyed by (seed, epoch,
// index) so that batches do not depend on prefetching or timing. Bad files (a
// wrong shape, too few frames, a missing or odd-sized frame) are errors naming
// the file. Link nanode::data (zlib, libpng).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "nanode/core/rng.hpp"
#include "nanode/data/prefetch.hpp"
#include "nanode/data/readers.hpp"
#include "nanode/data/shard.hpp"
#include "nanode/tensor.hpp"

namespace nanode::data {

/// Sequences of frames. read() fills `len` frames [C, H, W] (float, [0, 1]) of
/// sequence i, starting at frame t0; `epoch` lets generated sources draw new
/// sequences each epoch (sources read from files ignore it).
class VideoSource {
 public:
  virtual ~VideoSource() = default;
  virtual int64_t size() const = 0;
  /// Frames available per sequence.
  virtual int64_t frames() const = 0;
  /// [C, H, W] of a frame.
  virtual std::vector<int64_t> frame_shape() const = 0;
  virtual void read(int64_t i, int64_t epoch, int64_t t0, int64_t len, float* dst) const = 0;
  /// Where the sequences come from, for messages.
  virtual std::string describe() const = 0;

  /// Fails, naming the source, unless sequences have at least `len` frames.
  void check_frames(int64_t len) const {
    NANODE_CHECK(len >= 1 && len <= frames(), describe(), ": sequences have ", frames(), " frames, but ", len,
                 " are needed (n_past + n_future)");
  }
};

namespace video_detail {
inline uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t z = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull;
  z ^= z >> 31;
  z *= 0x94D049BB133111EBull;
  return z ^ (z >> 29);
}
}  // namespace video_detail

// ---- Moving MNIST, the standard file ------------------------------------------

/// The sequences of mnist_test_seq.npy (uint8 [T, N, H, W]) listed in `index`.
class MovingMnistFile : public VideoSource {
 public:
  struct Data {
    std::string path;
    int64_t T = 0, N = 0, H = 0, W = 0;
    std::vector<uint8_t> bytes;
  };
  MovingMnistFile(std::shared_ptr<const Data> d, std::vector<int64_t> index, std::string part)
      : d_(std::move(d)), index_(std::move(index)), part_(std::move(part)) {}
  int64_t size() const override { return static_cast<int64_t>(index_.size()); }
  int64_t frames() const override { return d_->T; }
  std::vector<int64_t> frame_shape() const override { return {1, d_->H, d_->W}; }
  std::string describe() const override { return d_->path + " (" + part_ + ")"; }
  void read(int64_t i, int64_t, int64_t t0, int64_t len, float* dst) const override {
    NANODE_CHECK(i >= 0 && i < size() && t0 >= 0 && t0 + len <= d_->T, describe(), ": sequence ", i, " frames [", t0,
                 ", ", t0 + len, ") out of range");
    const int64_t n = index_[static_cast<size_t>(i)], hw = d_->H * d_->W;
    for (int64_t t = 0; t < len; ++t) {
      const uint8_t* src = d_->bytes.data() + ((t0 + t) * d_->N + n) * hw;
      for (int64_t k = 0; k < hw; ++k) dst[t * hw + k] = static_cast<float>(src[k]) * (1.0f / 255.0f);
    }
  }

 private:
  std::shared_ptr<const Data> d_;
  std::vector<int64_t> index_;
  std::string part_;
};

/// Reads mnist_test_seq.npy and splits its N sequences into train and test: a
/// permutation drawn from `seed`, the first `test_count` of it for test.
inline std::pair<std::shared_ptr<VideoSource>, std::shared_ptr<VideoSource>> load_moving_mnist_file(
    const std::string& path, int64_t test_count, uint64_t seed) {
  NANODE_CHECK(std::filesystem::is_regular_file(path), path, ": no such file (the standard Moving MNIST file, "
               "mnist_test_seq.npy from http://www.cs.toronto.edu/~nitish/unsupervised_video/)");
  Array a = read_npy(path);
  NANODE_CHECK(a.elem == Elem::U8 && a.dims.size() == 4, path, ": expected uint8 frames [T, N, H, W] (Moving MNIST: ",
               "[20, 10000, 64, 64]), got ", a.dims.size(), " dimensions of ", npy_descr(a.elem));
  auto d = std::make_shared<MovingMnistFile::Data>();
  d->path = path;
  d->T = a.dims[0], d->N = a.dims[1], d->H = a.dims[2], d->W = a.dims[3];
  NANODE_CHECK(d->T >= 2 && d->N >= 2 && d->H >= 8 && d->W >= 8, path, ": shape [", d->T, ", ", d->N, ", ", d->H,
               ", ", d->W, "] is not a set of sequences [T >= 2, N >= 2, H >= 8, W >= 8]");
  NANODE_CHECK(test_count >= 1 && test_count < d->N, path, ": test_count ", test_count, " must be in [1, ", d->N,
               ") (the file has ", d->N, " sequences)");
  d->bytes = std::move(a.bytes);
  std::vector<int64_t> perm(static_cast<size_t>(d->N));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  Generator g(video_detail::mix(seed, 0x4d4d4e495354ull));
  g.shuffle(perm);
  std::vector<int64_t> test(perm.begin(), perm.begin() + test_count), train(perm.begin() + test_count, perm.end());
  std::sort(test.begin(), test.end());
  std::sort(train.begin(), train.end());
  return {std::make_shared<MovingMnistFile>(d, std::move(train), "train"),
          std::make_shared<MovingMnistFile>(d, std::move(test), "test")};
}

// ---- Stochastic Moving MNIST ----------------------------------------------------

struct MovingDigitsOptions {
  int64_t image_size = 64;   ///< square canvas
  int64_t digit_size = 32;   ///< digits are rescaled (bilinear) to this size
  int64_t num_digits = 2;
  int64_t max_speed = 4;     ///< velocities are integers in [-max_speed, max_speed]
  bool deterministic = false;  ///< bounces reflect (true) or draw a new velocity (false)
  int64_t frames = 30;       ///< frames per sequence
  int64_t sequences = 10000; ///< sequences per epoch
  uint64_t seed = 0;
};

/// Digit trajectories on a canvas, from a set of grayscale images [N, H, W] (IDX).
/// Sequence i of epoch e is drawn from the stream keyed by (seed, e, i): the same
/// seed gives the same sequences whatever reads them and in whatever order.
class MovingDigits : public VideoSource {
 public:
  MovingDigits(std::shared_ptr<const Array> digits, std::string origin, MovingDigitsOptions o)
      : digits_(std::move(digits)), origin_(std::move(origin)), o_(o) {
    NANODE_CHECK(digits_ && digits_->elem == Elem::U8 && digits_->dims.size() == 3 && digits_->dims[0] >= 1,
                 origin_, ": the digits must be uint8 images [N, H, W] (an IDX image file)");
    NANODE_CHECK(o_.digit_size >= 2 && o_.image_size > o_.digit_size, "MovingDigits: the canvas (", o_.image_size,
                 ") must be larger than a digit (", o_.digit_size, ")");
    NANODE_CHECK(o_.num_digits >= 1 && o_.num_digits <= 8, "MovingDigits: num_digits must be in [1, 8], got ",
                 o_.num_digits);
    NANODE_CHECK(o_.max_speed >= 1 && o_.max_speed < o_.image_size - o_.digit_size,
                 "MovingDigits: max_speed must be in [1, ", o_.image_size - o_.digit_size - 1, "], got ", o_.max_speed);
    NANODE_CHECK(o_.frames >= 1 && o_.sequences >= 1, "MovingDigits: frames and sequences must be positive");
  }
  int64_t size() const override { return o_.sequences; }
  int64_t frames() const override { return o_.frames; }
  std::vector<int64_t> frame_shape() const override { return {1, o_.image_size, o_.image_size}; }
  std::string describe() const override {
    return "moving digits from " + origin_ + " (" + std::to_string(o_.num_digits) + " per sequence, " +
           (o_.deterministic ? "deterministic" : "stochastic") + " bounces)";
  }
  const MovingDigitsOptions& options() const { return o_; }

  /// One digit's path: the top-left corner of its box at each frame, and the
  /// velocity it moved with after the frame.
  struct Path {
    int64_t digit = 0;
    std::vector<int64_t> x, y, vx, vy;
  };

  /// The digits' paths of sequence i, epoch e over its first `len` frames (what
  /// read() draws). Each digit draws from its own stream, so a path's first frames
  /// do not depend on how many frames are asked for.
  std::vector<Path> paths(int64_t i, int64_t epoch, int64_t len) const {
    const uint64_t base =
        video_detail::mix(video_detail::mix(o_.seed, static_cast<uint64_t>(epoch) + 0x1000), static_cast<uint64_t>(i));
    const int64_t last = o_.image_size - o_.digit_size - 1;  // largest top-left coordinate
    const int64_t v = o_.max_speed;
    std::vector<Path> out(static_cast<size_t>(o_.num_digits));
    for (size_t d = 0; d < out.size(); ++d) {
      Path& p = out[d];
      Generator g(video_detail::mix(base, d));
      p.digit = g.randint(0, digits_->dims[0]);
      int64_t x = g.randint(0, last + 1), y = g.randint(0, last + 1);
      int64_t vx = g.randint(-v, v + 1), vy = g.randint(-v, v + 1);
      for (int64_t t = 0; t < len; ++t) {
        // At a wall: back inside, and a reflected or a new velocity (the component
        // away from the wall in [1, v], the other in [-v, v]; in a corner both
        // components point away from their walls).
        const bool wall_y = y < 0 || y > last, wall_x = x < 0 || x > last;
        const bool low_y = y < 0, low_x = x < 0;
        if (wall_y) y = low_y ? 0 : last;
        if (wall_x) x = low_x ? 0 : last;
        if (o_.deterministic) {
          if (wall_y) vy = -vy;
          if (wall_x) vx = -vx;
        } else {
          auto away = [&](bool low) { return low ? g.randint(1, v + 1) : -g.randint(1, v + 1); };
          if (wall_y) {
            vy = away(low_y);
            if (!wall_x) vx = g.randint(-v, v + 1);
          }
          if (wall_x) {
            vx = away(low_x);
            if (!wall_y) vy = g.randint(-v, v + 1);
          }
        }
        p.x.push_back(x), p.y.push_back(y), p.vx.push_back(vx), p.vy.push_back(vy);
        x += vx, y += vy;
      }
    }
    return out;
  }

  void read(int64_t i, int64_t epoch, int64_t t0, int64_t len, float* dst) const override {
    NANODE_CHECK(i >= 0 && i < size() && t0 >= 0 && len >= 0 && t0 + len <= o_.frames, describe(), ": sequence ", i,
                 " frames [", t0, ", ", t0 + len, ") out of range");
    const int64_t S = o_.image_size, D = o_.digit_size;
    std::fill(dst, dst + len * S * S, 0.0f);
    std::vector<float> digit(static_cast<size_t>(D * D));
    for (const Path& p : paths(i, epoch, t0 + len)) {
      rescaled(p.digit, digit.data());
      for (int64_t t = 0; t < len; ++t) {
        float* frame = dst + t * S * S;
        const int64_t x = p.x[static_cast<size_t>(t0 + t)], y = p.y[static_cast<size_t>(t0 + t)];
        for (int64_t r = 0; r < D; ++r)
          for (int64_t c = 0; c < D; ++c) frame[(y + r) * S + x + c] += digit[static_cast<size_t>(r * D + c)];
      }
    }
    for (int64_t k = 0; k < len * S * S; ++k) dst[k] = std::min(dst[k], 1.0f);
  }

  /// Image `n` of the digit set, rescaled bilinearly (pixel centres aligned) to
  /// digit_size x digit_size, in [0, 1].
  void rescaled(int64_t n, float* out) const {
    const int64_t H = digits_->dims[1], W = digits_->dims[2], D = o_.digit_size;
    const uint8_t* src = digits_->bytes.data() + n * H * W;
    auto px = [&](int64_t r, int64_t c) {
      r = std::clamp<int64_t>(r, 0, H - 1), c = std::clamp<int64_t>(c, 0, W - 1);
      return static_cast<float>(src[r * W + c]) * (1.0f / 255.0f);
    };
    for (int64_t r = 0; r < D; ++r) {
      const double fy = (static_cast<double>(r) + 0.5) * static_cast<double>(H) / static_cast<double>(D) - 0.5;
      const int64_t y0 = static_cast<int64_t>(std::floor(fy));
      const float wy = static_cast<float>(fy - static_cast<double>(y0));
      for (int64_t c = 0; c < D; ++c) {
        const double fx = (static_cast<double>(c) + 0.5) * static_cast<double>(W) / static_cast<double>(D) - 0.5;
        const int64_t x0 = static_cast<int64_t>(std::floor(fx));
        const float wx = static_cast<float>(fx - static_cast<double>(x0));
        out[r * D + c] = (1 - wy) * ((1 - wx) * px(y0, x0) + wx * px(y0, x0 + 1)) +
                         wy * ((1 - wx) * px(y0 + 1, x0) + wx * px(y0 + 1, x0 + 1));
      }
    }
  }

 private:
  std::shared_ptr<const Array> digits_;
  std::string origin_;
  MovingDigitsOptions o_;
};

// ---- BAIR robot pushing ---------------------------------------------------------

/// SVG's processed BAIR: <root>/<split>/<record>/<k>/<i>.png, i = 0 .. frames-1.
class BairSource : public VideoSource {
 public:
  BairSource(std::string root, std::string split, int64_t frames = 30) : frames_(frames) {
    namespace fs = std::filesystem;
    const fs::path dir = fs::path(root) / split;
    dir_ = dir.string();
    NANODE_CHECK(fs::is_directory(dir), dir_, ": no such directory (BAIR in SVG's processed layout: "
                 "processed_data/{train,test}/<record>/<k>/<i>.png; see SVG's data/convert_bair.py)");
    NANODE_CHECK(frames_ >= 1, "BairSource: frames must be positive");
    std::vector<fs::path> records;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_directory()) records.push_back(e.path());
    std::sort(records.begin(), records.end());
    for (const auto& r : records) {
      std::vector<std::pair<int64_t, fs::path>> seqs;
      for (const auto& e : fs::directory_iterator(r)) {
        if (!e.is_directory()) continue;
        const std::string name = e.path().filename().string();
        NANODE_CHECK(!name.empty() && std::all_of(name.begin(), name.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) &&
                         name.size() < 10,
                     e.path().string(), ": expected sequence folders named by numbers (<record>/<k>/<i>.png)");
        seqs.push_back({std::stoll(name), e.path()});
      }
      std::sort(seqs.begin(), seqs.end());
      for (auto& s : seqs) {
        // Every frame must be there: a sequence with a hole is an error now, not
        // in the middle of training.
        for (int64_t i = 0; i < frames_; ++i) {
          const fs::path f = s.second / (std::to_string(i) + ".png");
          NANODE_CHECK(fs::is_regular_file(f), f.string(), ": missing frame (each sequence needs frames 0..",
                       frames_ - 1, ".png)");
        }
        seqs_.push_back(s.second.string());
      }
    }
    NANODE_CHECK(!seqs_.empty(), dir_, ": no sequences (expected <record>/<k>/<i>.png)");
    const Image first = read_png(frame_path(0, 0), 3);
    h_ = first.h, w_ = first.w;
  }
  int64_t size() const override { return static_cast<int64_t>(seqs_.size()); }
  int64_t frames() const override { return frames_; }
  std::vector<int64_t> frame_shape() const override { return {3, h_, w_}; }
  std::string describe() const override { return dir_; }
  std::string frame_path(int64_t i, int64_t t) const {
    return seqs_[static_cast<size_t>(i)] + "/" + std::to_string(t) + ".png";
  }
  void read(int64_t i, int64_t, int64_t t0, int64_t len, float* dst) const override {
    NANODE_CHECK(i >= 0 && i < size() && t0 >= 0 && t0 + len <= frames_, describe(), ": sequence ", i, " frames [",
                 t0, ", ", t0 + len, ") out of range");
    const int64_t hw = h_ * w_;
    for (int64_t t = 0; t < len; ++t) {
      const std::string path = frame_path(i, t0 + t);
      const Image im = read_png(path, 3);
      NANODE_CHECK(im.h == h_ && im.w == w_, path, ": frame of ", im.w, "x", im.h, ", but the sequences are ", w_,
                   "x", h_, " (from ", frame_path(0, 0), ")");
      float* f = dst + t * 3 * hw;
      for (int64_t k = 0; k < hw; ++k)
        for (int64_t c = 0; c < 3; ++c)
          f[c * hw + k] = static_cast<float>(im.pixels[static_cast<size_t>(k * 3 + c)]) * (1.0f / 255.0f);
    }
  }

 private:
  std::string dir_;
  int64_t frames_ = 30, h_ = 0, w_ = 0;
  std::vector<std::string> seqs_;
};

// ---- batches --------------------------------------------------------------------

struct VideoLoaderOptions {
  int64_t batch_size = 16;
  int64_t frames = 15;  ///< frames per sequence in a batch (n_past + n_future)
  bool shuffle = true;
  bool drop_last = true;
  uint64_t seed = 0;
  int prefetch = 2;     ///< batches prepared ahead on a background thread (0: none)
  /// Data-parallel sharding, as data::LoaderOptions: global batch b holds what
  /// one process with batch_size x world would put in its batch b, and rank r
  /// takes the r-th share; or, with whole_batches_by_rank, rank r takes the whole
  /// batches r, r + world, ... (evaluation).
  int rank = 0, world = 1;
  bool whole_batches_by_rank = false;
};

struct VideoBatch {
  Tensor frames;  ///< float32 [T, B, C, H, W] in [0, 1]
  int64_t index = 0;
  int64_t global_count = 0;  ///< sequences in the global batch over all ranks
};

/// Batches of sequences, shuffled per epoch by (seed, epoch), prepared ahead on a
/// background thread; the same (seed, epoch, batch) gives the same batch with or
/// without prefetching.
class VideoLoader {
 public:
  VideoLoader(std::shared_ptr<const VideoSource> src, VideoLoaderOptions o) : src_(std::move(src)), o_(o) {
    NANODE_CHECK(src_ && src_->size() > 0, "VideoLoader: no sequences");
    NANODE_CHECK(o_.batch_size > 0, "VideoLoader: batch size must be positive, got ", o_.batch_size);
    NANODE_CHECK(o_.prefetch >= 0, "VideoLoader: prefetch must be >= 0, got ", o_.prefetch);
    shard_ = BatchSharding{o_.batch_size, o_.rank, o_.world, o_.whole_batches_by_rank, o_.drop_last};
    shard_.check("VideoLoader");
    src_->check_frames(o_.frames);
    NANODE_CHECK(shard_.global_batches(src_->size()) > 0, src_->describe(), ": ", src_->size(), " sequences make no full batch of ",
                 shard_.global_batch_size(), o_.world > 1 && !o_.whole_batches_by_rank ? " (the global batch)" : "");
  }
  VideoLoader(const VideoLoader&) = delete;
  VideoLoader& operator=(const VideoLoader&) = delete;

  /// Batches this rank takes per epoch.
  int64_t batches_per_epoch() const { return shard_.batches(src_->size()); }
  int64_t global_batch_size() const { return shard_.global_batch_size(); }
  const VideoSource& source() const { return *src_; }

  std::vector<int64_t> order(int64_t epoch) const {
    std::vector<int64_t> idx(static_cast<size_t>(src_->size()));
    std::iota(idx.begin(), idx.end(), int64_t{0});
    if (o_.shuffle) {
      Generator g(video_detail::mix(video_detail::mix(o_.seed, 0x5649444f), static_cast<uint64_t>(epoch)));
      g.shuffle(idx);
    }
    return idx;
  }

  void start_epoch(int64_t epoch) {
    prefetch_.stop();  // before the fields its thread reads change
    epoch_ = epoch;
    order_ = order(epoch);
    started_ = true;
    prefetch_.start(batches_per_epoch(), o_.prefetch, [this](int64_t k) { return fill(shard_.global_index(k)); });
  }

  bool next(VideoBatch& out) {
    NANODE_CHECK(started_, "VideoLoader::next: call start_epoch(epoch) first");
    Host h;
    if (!prefetch_.take(h)) return false;
    out = to_batch(h);
    return true;
  }

  /// Batch b of epoch `epoch`, made directly (no background thread involved).
  VideoBatch make_batch(int64_t epoch, int64_t b) const {
    NANODE_CHECK(b >= 0 && b < batches_per_epoch(), "VideoLoader::make_batch: batch ", b, " outside [0, ",
                 batches_per_epoch(), ")");
    return to_batch(fill_from(order(epoch), epoch, shard_.global_index(b)));
  }

 private:
  struct Host {
    int64_t index = 0, count = 0, global_count = 0;
    std::vector<float> frames;  // [B, T, C, H, W]
  };

  Host fill(int64_t b) const { return fill_from(order_, epoch_, b); }

  Host fill_from(const std::vector<int64_t>& ord, int64_t epoch, int64_t b) const {
    const auto fs = src_->frame_shape();
    const int64_t per = fs[0] * fs[1] * fs[2], T = o_.frames, n = src_->size();
    const BatchSharding::Range share = shard_.range(b, n);  // this rank's share of global batch b
    const int64_t begin = share.begin;
    Host h;
    h.index = b, h.count = share.count, h.global_count = share.global_count;
    h.frames.resize(static_cast<size_t>(h.count * T * per));
    for (int64_t k = 0; k < h.count; ++k)
      src_->read(ord[static_cast<size_t>(begin + k)], epoch, 0, T, h.frames.data() + k * T * per);
    return h;
  }

  VideoBatch to_batch(const Host& h) const {
    const auto fs = src_->frame_shape();
    const int64_t per = fs[0] * fs[1] * fs[2], T = o_.frames, B = h.count;
    // [B, T, ...] to [T, B, ...].
    std::vector<float> tb(h.frames.size());
    for (int64_t k = 0; k < B; ++k)
      for (int64_t t = 0; t < T; ++t)
        std::copy_n(h.frames.data() + (k * T + t) * per, per, tb.data() + (t * B + k) * per);
    VideoBatch out;
    out.index = h.index;
    out.global_count = h.global_count;
    out.frames = Tensor::from_vector<float>(tb, Shape{T, B, fs[0], fs[1], fs[2]});
    return out;
  }

  std::shared_ptr<const VideoSource> src_;
  VideoLoaderOptions o_;
  BatchSharding shard_;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  bool started_ = false;
  Prefetcher<Host> prefetch_;  // last: stopped before the members its thread reads
};

}  // namespace nanode::data
