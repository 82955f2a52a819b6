#pragma once
// Training the video model (SVG-LP with VGG or NANODE blocks): epochs of sequence
// batches, the -ELBO per predicted frame split into its reconstruction (MSE per
// pixel, frames in [0, 1]) and KL (nats per frame) terms; on held-out sequences
// the same terms and, for the best of k sequences sampled from the learned prior,
// MSE, PSNR (dB) and SSIM per future frame; a PNG strip of ground truth, the
// posterior reconstruction and prior samples; metrics.csv; an atomic checkpoint
// every epoch and --resume with the classifier trainer's guarantees (batches,
// latent noise and arithmetic are deterministic in the seed, the epoch and the
// batch, so a resumed run equals an uninterrupted one).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "nanode/data/datasets.hpp"
#include "nanode/data/video.hpp"
#include "nanode/models/checkpoint.hpp"
#include "nanode/models/run_guard.hpp"
#include "nanode/models/trainer.hpp"
#include "nanode/models/video.hpp"
#include "nanode/models/video_metrics.hpp"

namespace nanode::models {

inline const std::vector<std::string>& video_dataset_names() {
  static const std::vector<std::string> n{"moving-fashion-mnist", "moving-mnist", "moving-mnist-file", "bair"};
  return n;
}

struct VideoTrainConfig {
  VideoModelOptions model;
  std::string dataset = "moving-fashion-mnist";
  std::string data_path;  ///< a directory (IDX digits, BAIR's processed_data) or mnist_test_seq.npy
  int64_t n_past = 5, n_future = 10;
  int64_t epochs = 10, batch_size = 16;
  int64_t train_sequences = 1600;  ///< per epoch, for generated data
  int64_t test_sequences = 64;     ///< held out (generated with another seed, or split from the file)
  int64_t num_digits = 2;
  bool deterministic = false;
  double lr = 2e-3, beta = 1e-4;
  int64_t samples = 5;  ///< k of the best-of-k evaluation
  uint64_t seed = 0;
  int64_t max_batches = 0;  ///< per epoch (0: all)
  std::string out_dir;
  bool resume = false;
  bool overwrite = false;       ///< replace an earlier run's results in out_dir
  bool detect_anomaly = false;  ///< check every op's result and gradient (slow)
  bool progress = true;
  Device device = Device::cpu();
  /// Data-parallel runs (nanode::dist): batch_size is per rank; batch norm per
  /// rank unless sync_batch_norm; distributed = false trains as one process.
  bool sync_batch_norm = false;
  bool distributed = true;
  int world() const { return distributed ? dist::world_size() : 1; }

  std::string fingerprint() const {
    std::ostringstream s;
    s.precision(17);
    s << "model=" << model.model << " arch=" << model.arch << " family=" << model.family << " order=" << model.order << " steps=" << model.steps
      << " method=" << model.method << " gradient=" << ode::gradient_name(model.gradient) << " width=" << model.width
      << " g=" << model.g_dim << " z=" << model.z_dim << " rnn=" << model.rnn_size << " channels=" << model.channels
      << " data=" << dataset << "@" << data_path << " past=" << n_past << " future=" << n_future
      << " epochs=" << epochs << " batch=" << batch_size << " train_seq=" << train_sequences
      << " test_seq=" << test_sequences << " digits=" << num_digits << " det=" << deterministic << " lr=" << lr
      << " beta=" << beta << " k=" << samples << " seed=" << seed << " max_batches=" << max_batches;
    if (world() > 1) s << " ranks=" << world();
    if (sync_batch_norm && world() > 1) s << " sync_bn=1";
    return s.str();
  }
};

struct VideoEpochMetrics {
  int64_t epoch = 0;
  double train_elbo = 0, train_mse = 0, train_kl = 0;  ///< per predicted frame
  double test_elbo = 0, test_mse = 0, test_kl = 0;
  double best_mse = 0, best_psnr = 0, best_ssim = 0;  ///< best of k prior samples, mean over future frames
  double frames_per_s = 0, seconds = 0;
  int64_t peak_activation_bytes = 0;
};

struct VideoTrainResult {
  std::vector<VideoEpochMetrics> epochs;
  int64_t parameters = 0, parameter_bytes = 0;
};

/// The train and test sources of a data set by name (see video_dataset_names()).
inline std::pair<std::shared_ptr<data::VideoSource>, std::shared_ptr<data::VideoSource>> load_video_dataset(
    const VideoTrainConfig& c) {
  const int64_t T = c.n_past + c.n_future;
  if (c.dataset == "moving-fashion-mnist" || c.dataset == "moving-mnist") {
    const bool fashion = c.dataset == "moving-fashion-mnist";
    const std::string dir = c.data_path.empty() ? data::default_data_dir(fashion ? "fashion-mnist" : "mnist") : c.data_path;
    std::string file;
    for (const char* stem : {"train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"})
      if (file.empty() && data::file_exists(dir + "/" + stem)) file = dir + "/" + stem;
    NANODE_CHECK(!file.empty(), c.dataset, ": no train-images-idx3-ubyte[.gz] in ", dir, "; ",
                 data::how_to_get(fashion ? "fashion-mnist" : "mnist"), " (or pass --data-path)");
    auto digits = std::make_shared<data::Array>(data::read_idx(file));
    NANODE_CHECK(digits->dims.size() == 3, file, ": expected images [N, H, W]");
    data::MovingDigitsOptions o;
    o.num_digits = c.num_digits, o.deterministic = c.deterministic, o.frames = T;
    o.sequences = c.train_sequences, o.seed = c.seed;
    auto train = std::make_shared<data::MovingDigits>(digits, file, o);
    o.sequences = c.test_sequences, o.seed = c.seed ^ 0x7E57000000000000ull;  // held-out sequences: another stream
    auto test = std::make_shared<data::MovingDigits>(digits, file, o);
    return {train, test};
  }
  if (c.dataset == "moving-mnist-file") {
    const std::string path = c.data_path.empty() ? std::string("data/mnist_test_seq.npy") : c.data_path;
    return data::load_moving_mnist_file(path, c.test_sequences, c.seed);
  }
  NANODE_CHECK(c.dataset == "bair", "unknown video data set '", c.dataset,
               "' (valid: moving-fashion-mnist, moving-mnist, moving-mnist-file, bair)");
  const std::string root = c.data_path.empty() ? std::string("data/bair/processed_data") : c.data_path;
  return {std::make_shared<data::BairSource>(root, "train"), std::make_shared<data::BairSource>(root, "test")};
}

class VideoTrainer {
 public:
  VideoTrainer(VideoTrainConfig cfg, std::shared_ptr<data::VideoSource> train, std::shared_ptr<data::VideoSource> test)
      : cfg_(std::move(cfg)), train_(std::move(train)), test_(std::move(test)) {
    NANODE_CHECK(!cfg_.resume || !cfg_.out_dir.empty(), "train_video: --resume needs --out-dir (where the checkpoint is)");
    world_ = cfg_.world(), rank_ = world_ > 1 ? dist::rank() : 0;
    main_ = rank_ == 0;
    if (!main_) cfg_.progress = false;  // one progress bar, one set of files: rank 0's
    if (!cfg_.out_dir.empty() && main_)
      folder_ = OutputFolder(cfg_.out_dir, cfg_.resume, cfg_.overwrite,
                             {"metrics.csv", "checkpoint.safetensors", "samples_epoch1.png"}, "checkpoint.safetensors",
                             "train_video");
    NANODE_CHECK(cfg_.epochs >= 1 && cfg_.batch_size >= 1 && cfg_.samples >= 1, "train_video: epochs, batch size and "
                 "samples must be >= 1");
    NANODE_CHECK(cfg_.n_past >= 1 && cfg_.n_future >= 1, "train_video: n_past and n_future must be >= 1");
    NANODE_CHECK(std::isfinite(cfg_.beta) && cfg_.beta >= 0, "train_video: beta must be finite and >= 0, got ", cfg_.beta);
    const auto fs = train_->frame_shape();
    NANODE_CHECK(fs == test_->frame_shape(), "train_video: train and test frames differ in shape");
    NANODE_CHECK(fs[1] == 64 && fs[2] == 64, train_->describe(), ": frames are ", fs[1], "x", fs[2],
                 ", the VGG-64 model needs 64x64");
    cfg_.model.channels = fs[0];
    if (cfg_.device.is_cuda())
      NANODE_CHECK(cuda_device_count() > cfg_.device.index, "train_video: ", cfg_.device, " requested, but this program "
                   "has ", cuda_device_count(), " CUDA device(s) (backend: ", cuda_backend_name(), ")");
    manual_seed(cfg_.seed);
    cfg_.model.seed = cfg_.seed;  // random features draw from the run's seed
    model_ = std::make_shared<SVGModel>(cfg_.model);
    model_->to(cfg_.device);
    if (world_ > 1) dist::broadcast_state(*model_);  // rank 0's initial parameters and buffers everywhere
    named_params_ = model_->named_parameters();
    if (world_ > 1) reducer_ = std::make_unique<dist::GradientReducer>(model_->parameters());
    optim::AdamOptions ao;
    ao.lr = cfg_.lr;
    opt_ = std::make_unique<optim::Adam>(model_->parameters(), ao);
    data::VideoLoaderOptions lo;
    lo.batch_size = cfg_.batch_size, lo.frames = cfg_.n_past + cfg_.n_future, lo.seed = cfg_.seed;
    lo.rank = rank_, lo.world = world_;
    train_loader_ = std::make_unique<data::VideoLoader>(train_, lo);  // drop_last: every rank a full share
    lo.shuffle = false, lo.drop_last = false, lo.whole_batches_by_rank = true;
    test_loader_ = std::make_unique<data::VideoLoader>(test_, lo);
    per_epoch_ = train_loader_->batches_per_epoch();
    if (cfg_.max_batches > 0) per_epoch_ = std::min(per_epoch_, cfg_.max_batches);
  }

  SVGModel& model() { return *model_; }
  int64_t batches_per_epoch() const { return per_epoch_; }
  std::string checkpoint_path() const { return cfg_.out_dir + "/checkpoint.safetensors"; }
  std::string metrics_path() const { return cfg_.out_dir + "/metrics.csv"; }

  VideoTrainResult run(const std::function<void(const VideoEpochMetrics&)>& on_epoch = {}) {
    VideoTrainResult r;
    r.parameters = model_->num_parameters();
    r.parameter_bytes = model_->parameter_bytes();
    anomaly::Guard detect(cfg_.detect_anomaly || anomaly::enabled());
    int64_t start = 0;
    if (cfg_.resume) start = restore(r);
    if (!cfg_.out_dir.empty() && main_ && start == 0) write_csv(r);
    for (int64_t epoch = start; epoch < cfg_.epochs; ++epoch) {
      VideoEpochMetrics m = train_epoch(epoch);
      if (world_ > 1 && !cfg_.sync_batch_norm)  // per-rank running statistics: rank 0's, everywhere
        for (auto& [n, b] : model_->named_buffers()) dist::broadcast(b.mutable_data(), 0, "broadcast of '" + n + "'");
      evaluate(m, epoch);
      r.epochs.push_back(m);
      if (!cfg_.out_dir.empty() && main_) {
        write_csv(r);
        if (guard_.diverging())
          std::fprintf(stderr, "train_video: the run is diverging: no checkpoint after epoch %lld (the last one is "
                       "kept)\n", static_cast<long long>(epoch + 1));
        else
          save_checkpoint(epoch + 1, r);
      }
      if (on_epoch) on_epoch(m);
    }
    return r;
  }

  /// Test -ELBO terms, and the best of k prior samples per sequence.
  void evaluate(VideoEpochMetrics& m, int64_t epoch) {
    model_->eval();
    NoGradGuard ng;
    const bool synced = dist::sync_batch_norm();
    dist::set_sync_batch_norm(false);  // evaluation: each batch alone, whichever rank has it
    test_loader_->start_epoch(0);
    data::VideoBatch b;
    double elbo = 0, mse = 0, kl = 0, bm = 0, bp = 0, bs = 0;
    int64_t seqs = 0, batches = 0;
    const auto fs = test_->frame_shape();
    const int64_t n = fs[0] * fs[1] * fs[2], F = cfg_.n_future;
    while (test_loader_->next(b)) {
      const Var frames(b.frames.to(cfg_.device));
      Generator g(stream(0x7E57, b.index));
      const VideoLoss L = model_->loss(frames, cfg_.n_past, cfg_.beta, g);
      elbo += L.loss.item() / static_cast<double>(L.frames), mse += L.mse.item() / static_cast<double>(L.frames);
      kl += L.kl.item() / static_cast<double>(L.frames);
      ++batches;
      const int64_t B = frames.size(1);
      std::vector<std::vector<float>> pred(static_cast<size_t>(cfg_.samples));  // [s] -> [F, B, n]
      std::vector<Tensor> first_samples;
      for (int64_t s = 0; s < cfg_.samples; ++s) {
        Generator gs(stream(0x5A3B1E + static_cast<uint64_t>(s), b.index));
        const Tensor p = model_->predict(frames, cfg_.n_past, gs).data().cpu();
        pred[static_cast<size_t>(s)] = p.to_vector<float>();
        if (b.index == 0 && s < 3) first_samples.push_back(p);
      }
      const std::vector<float> all = b.frames.to_vector<float>();  // [T, B, n]
      for (int64_t k = 0; k < B; ++k) {
        std::vector<float> truth(static_cast<size_t>(F * n));
        std::vector<std::vector<float>> samples(static_cast<size_t>(cfg_.samples), std::vector<float>(static_cast<size_t>(F * n)));
        for (int64_t f = 0; f < F; ++f) {
          std::copy_n(all.data() + ((cfg_.n_past + f) * B + k) * n, n, truth.data() + f * n);
          for (int64_t s = 0; s < cfg_.samples; ++s)
            std::copy_n(pred[static_cast<size_t>(s)].data() + (f * B + k) * n, n,
                        samples[static_cast<size_t>(s)].data() + f * n);
        }
        const BestOfK best = best_of_k(samples, truth, F, fs[0], fs[1], fs[2]);
        for (int64_t f = 0; f < F; ++f) {
          bm += best.mse[static_cast<size_t>(f)] / static_cast<double>(F);
          bp += std::min(best.psnr[static_cast<size_t>(f)], 99.0) / static_cast<double>(F);  // identical frames: capped
          bs += best.ssim[static_cast<size_t>(f)] / static_cast<double>(F);
        }
        ++seqs;
      }
      if (b.index == 0 && !cfg_.out_dir.empty() && main_)
        write_strip(b.frames, L.reconstruction.data().cpu(), first_samples, epoch);
    }
    std::vector<double> sums{elbo, mse, kl, bm, bp, bs, static_cast<double>(seqs), static_cast<double>(batches)};
    if (world_ > 1) dist::all_reduce_sum(sums, "evaluation sums");
    m.test_elbo = sums[0] / sums[7], m.test_mse = sums[1] / sums[7], m.test_kl = sums[2] / sums[7];
    m.best_mse = sums[3] / sums[6], m.best_psnr = sums[4] / sums[6], m.best_ssim = sums[5] / sums[6];
    dist::set_sync_batch_norm(synced);
    model_->train();
  }

 private:
  uint64_t stream(uint64_t salt, int64_t i) const {
    return data::video_detail::mix(data::video_detail::mix(cfg_.seed, salt), static_cast<uint64_t>(i));
  }

  VideoEpochMetrics train_epoch(int64_t epoch) {
    model_->train();
    dist::set_sync_batch_norm(cfg_.sync_batch_norm && world_ > 1);
    struct Unsync {
      ~Unsync() { dist::set_sync_batch_norm(false); }
    } unsync;
    VideoEpochMetrics m;
    m.epoch = epoch + 1;
    train_loader_->start_epoch(epoch);
    ProgressBar bar(cfg_.progress, epoch, cfg_.epochs, per_epoch_);
    bar.set_unit("frames");
    const auto t0 = std::chrono::steady_clock::now();
    double elbo = 0, mse = 0, kl = 0;
    int64_t frames_seen = 0, done = 0;
    data::VideoBatch b;
    for (int64_t k = 0; k < per_epoch_ && train_loader_->next(b); ++k) {
      opt_->zero_grad();
      const Var frames(b.frames.to(cfg_.device));
      guard_.at(epoch, k, cfg_.lr);
      try {
        PeakMemoryScope scope(cfg_.device);
        // The latent noise of this batch (and, in a data-parallel run, this rank's share).
        Generator g(world_ > 1 ? stream(stream(static_cast<uint64_t>(epoch) + 1, k), rank_)
                               : stream(static_cast<uint64_t>(epoch) + 1, k));
        const VideoLoss L = model_->loss(frames, cfg_.n_past, cfg_.beta, g);
        const double lv = L.loss.item();
        guard_.loss(lv);
        if (reducer_)  // equal shares (drop_last): the ranks' mean is the global batch's
          reducer_->backward(L.loss);
        else
          L.loss.backward();
        guard_.gradients(named_params_);
        m.peak_activation_bytes = std::max(m.peak_activation_bytes, scope.peak_above_start());
        elbo += lv / static_cast<double>(L.frames), mse += L.mse.item() / static_cast<double>(L.frames);
        kl += L.kl.item() / static_cast<double>(L.frames);
      } catch (const dist::TimeoutError&) {
        throw;  // as it is: the program ends the job
      } catch (const Error& e) {
        const std::string what = e.what();
        if (what.rfind("train_video:", 0) == 0) throw;
        fail("train_video: at ", guard_.where(), ": ", what);
      }
      opt_->step();
      guard_.parameters(named_params_);
      ++done;
      frames_seen += frames.size(0) * (world_ > 1 ? b.global_count : frames.size(1));
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      bar.set_batch_images(static_cast<double>(frames_seen) / static_cast<double>(done));
      bar.update(done, elbo / static_cast<double>(done), -1.0, static_cast<double>(frames_seen) / std::max(1e-9, secs));
    }
    m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<double> sums{elbo, mse, kl, static_cast<double>(done), m.seconds, static_cast<double>(m.peak_activation_bytes)};
    if (world_ > 1) dist::all_reduce_sum(sums, "training sums");
    const double d = std::max(1.0, sums[3]);
    m.train_elbo = sums[0] / d, m.train_mse = sums[1] / d, m.train_kl = sums[2] / d;
    m.seconds = sums[4] / world_;  // the ranks' mean
    m.peak_activation_bytes = static_cast<int64_t>(sums[5] / world_);
    m.frames_per_s = static_cast<double>(frames_seen) / std::max(1e-9, m.seconds);
    return m;
  }

  /// Rows: ground truth (all frames), the posterior reconstruction (frames 1..T-1),
  /// then up to three prior samples (the conditioning frames, then predictions).
  void write_strip(const Tensor& frames, const Tensor& recon, const std::vector<Tensor>& samples, int64_t epoch) {
    const int64_t T = frames.size(0), B = frames.size(1), C = frames.size(2), H = frames.size(3), W = frames.size(4);
    const int64_t rows = 2 + static_cast<int64_t>(samples.size());
    data::Image im;
    im.h = rows * H + (rows - 1), im.w = T * W + (T - 1), im.c = C == 1 ? 1 : 3;
    im.pixels.assign(static_cast<size_t>(im.h * im.w * im.c), 128);
    const std::vector<float> truth = frames.cpu().to_vector<float>(), rec = recon.to_vector<float>();
    auto put = [&](int64_t row, int64_t col, const float* f) {  // f: [C, H, W] of sequence 0
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x)
          for (int64_t c = 0; c < im.c; ++c) {
            const float v = std::clamp(f[(c * H + y) * W + x], 0.0f, 1.0f);
            im.pixels[static_cast<size_t>(((row * (H + 1) + y) * im.w + col * (W + 1) + x) * im.c + c)] =
                static_cast<uint8_t>(std::lround(v * 255.0f));
          }
    };
    const int64_t n = C * H * W;
    for (int64_t t = 0; t < T; ++t) put(0, t, truth.data() + (t * B) * n);
    for (int64_t t = 1; t < T; ++t) put(1, t, rec.data() + ((t - 1) * B) * n);  // x̂_t: [(T-1) B, ...]
    for (size_t s = 0; s < samples.size(); ++s) {
      const std::vector<float> p = samples[s].to_vector<float>();
      for (int64_t t = 0; t < cfg_.n_past; ++t) put(2 + static_cast<int64_t>(s), t, truth.data() + (t * B) * n);
      for (int64_t f = 0; f < cfg_.n_future; ++f) put(2 + static_cast<int64_t>(s), cfg_.n_past + f, p.data() + (f * B) * n);
    }
    data::write_png(cfg_.out_dir + "/samples_epoch" + std::to_string(epoch + 1) + ".png", im);
  }

  static constexpr const char* kCsvHeader =
      "epoch,train_elbo,train_mse,train_kl,test_elbo,test_mse,test_kl,best_mse,best_psnr,best_ssim,frames_per_s,seconds,"
      "peak_activation_bytes";

  static std::string csv_row(const VideoEpochMetrics& m, bool precise) {
    char buf[768];
    const char* f = precise ? "%lld,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%lld"
                            : "%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.4f,%.4f,%.1f,%.2f,%lld";
    std::snprintf(buf, sizeof(buf), f, static_cast<long long>(m.epoch), m.train_elbo, m.train_mse, m.train_kl,
                  m.test_elbo, m.test_mse, m.test_kl, m.best_mse, m.best_psnr, m.best_ssim, m.frames_per_s, m.seconds,
                  static_cast<long long>(m.peak_activation_bytes));
    return buf;
  }

  void write_csv(const VideoTrainResult& r) {
    std::ofstream out(metrics_path(), std::ios::trunc);
    NANODE_CHECK(out.good(), metrics_path(), ": cannot write");
    out << kCsvHeader << "\n";
    for (const auto& m : r.epochs) out << csv_row(m, false) << "\n";
  }

  void save_checkpoint(int64_t epochs_done, const VideoTrainResult& r) {
    std::string rows;
    for (const auto& m : r.epochs) rows += csv_row(m, true) + "\n";
    save_training_state(checkpoint_path(), *model_, *opt_,
                        {{"format", "nanode-video-1"},
                         {"config", cfg_.fingerprint()},
                         {"epochs_done", std::to_string(epochs_done)},
                         {"metrics", rows}});
  }

  int64_t restore(VideoTrainResult& r) {
    NANODE_CHECK(!cfg_.out_dir.empty(), "train_video: --resume needs --out-dir");
    NANODE_CHECK(!main_ || data::file_exists(checkpoint_path()), "train_video: --resume, but there is no checkpoint at ",
                 checkpoint_path());
    ResumeCheck check;
    check.format = "nanode-video-1", check.fingerprint = cfg_.fingerprint(), check.max_epochs = cfg_.epochs;
    check.steps_per_epoch = per_epoch_, check.state_per_param = 2;  // Adam: m and v
    int64_t done = 0;
    const auto meta = load_training_state_on_ranks(checkpoint_path(), *model_, *opt_, check, &done, world_);
    std::istringstream rows(meta.at("metrics"));
    std::string line;
    while (std::getline(rows, line)) {
      if (line.empty()) continue;
      VideoEpochMetrics m;
      long long ep = 0, peak = 0;
      const int got = std::sscanf(line.c_str(), "%lld,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lld", &ep,
                                  &m.train_elbo, &m.train_mse, &m.train_kl, &m.test_elbo, &m.test_mse, &m.test_kl,
                                  &m.best_mse, &m.best_psnr, &m.best_ssim, &m.frames_per_s, &m.seconds, &peak);
      NANODE_CHECK(got == 13, checkpoint_path(), ": malformed metrics row '", line, "'");
      m.epoch = ep, m.peak_activation_bytes = peak;
      r.epochs.push_back(m);
    }
    NANODE_CHECK(static_cast<int64_t>(r.epochs.size()) == done, checkpoint_path(), ": ", r.epochs.size(),
                 " metrics rows for ", done, " epochs");
    if (main_) write_csv(r);
    if (cfg_.progress)
      std::fprintf(stderr, "resumed from %s after epoch %lld\n", checkpoint_path().c_str(), static_cast<long long>(done));
    return done;
  }

  VideoTrainConfig cfg_;
  OutputFolder folder_;  // locked for the trainer's lifetime
  StepGuard guard_{"train_video"};
  std::vector<std::pair<std::string, Var>> named_params_;
  std::shared_ptr<data::VideoSource> train_, test_;
  std::shared_ptr<SVGModel> model_;
  std::unique_ptr<optim::Adam> opt_;
  std::unique_ptr<data::VideoLoader> train_loader_, test_loader_;
  int64_t per_epoch_ = 0;
  int rank_ = 0, world_ = 1;
  bool main_ = true;
  std::unique_ptr<dist::GradientReducer> reducer_;
};

}  // namespace nanode::models
