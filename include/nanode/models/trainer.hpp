#pragma once
// Training a classifier: epochs of shuffled, augmented batches; evaluation on the
// test split after each epoch; metrics as CSV; a safetensors checkpoint written
// atomically every epoch; and resuming a killed run from its last checkpoint with
// the same results as an uninterrupted run (batches, augmentation and the model's
// arithmetic are all deterministic in the seed and the epoch).
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "nanode/data/datasets.hpp"
#include "nanode/data/safetensors.hpp"
#include "nanode/dist/dist.hpp"
#include "nanode/models/checkpoint.hpp"
#include "nanode/models/classifier.hpp"
#include "nanode/models/run_guard.hpp"
#include "nanode/nn/optim.hpp"

namespace nanode::models {

struct TrainConfig {
  ClassifierOptions model;
  int64_t epochs = 5, batch_size = 128, eval_batch_size = 500;  // defaults: the README main job
  std::string optimizer = "adam";  ///< adam | adamw | sgd
  double lr = 2e-3, momentum = 0.9, weight_decay = 0.0;
  /// L2 penalty l2 * sum of squared time-basis coefficients added to the loss
  /// (tv::l2_penalty: not the Householder vectors; A_0 only with l2_a0).
  double l2 = 0.0;
  bool l2_a0 = false;
  std::string schedule = "cosine";  ///< constant | cosine | step (x0.1 after half the steps)
  int64_t warmup = 0;               ///< linear warm-up steps
  uint64_t seed = 0;
  int64_t crop_padding = 0;
  bool hflip = false;
  int64_t max_batches = 0;  ///< per epoch (0: all), for smoke runs and budgets
  std::string out_dir;      ///< metrics.csv and checkpoint.safetensors (empty: neither)
  bool resume = false;
  bool overwrite = false;       ///< replace an earlier run's results in out_dir
  bool detect_anomaly = false;  ///< check every op's result and gradient (slow)
  bool progress = true;  ///< the progress bar on stderr
  std::string data_tag;  ///< names the data (set, directory, limits) in the fingerprint
  Device device = Device::cpu();  ///< where the model trains (batches are moved there)
  /// Data-parallel runs (nanode::dist, world size > 1): batch_size is per rank, the
  /// global batch batch_size x ranks. Batch norm uses each rank's own statistics
  /// unless sync_batch_norm (the global batch's, as one process would).
  bool sync_batch_norm = false;
  /// false: train as one process even inside a data-parallel job (a reference
  /// run on one rank; no collectives).
  bool distributed = true;
  int world() const { return distributed ? dist::world_size() : 1; }

  /// Everything that decides the results, for checking a checkpoint against.
  std::string fingerprint() const {
    std::ostringstream s;
    s.precision(17);
    s << "model=" << model.model << " order=" << model.order << " widths=";
    for (auto w : model.widths) s << w << ",";
    s << " steps=" << model.steps << " method=" << model.method << " gradient=" << ode::gradient_name(model.gradient)
      << " in=" << model.in_channels << "x" << model.image_size << " classes=" << model.classes
      << " epochs=" << epochs << " batch=" << batch_size << " opt=" << optimizer << " lr=" << lr
      << " momentum=" << momentum << " wd=" << weight_decay << " schedule=" << schedule << " warmup=" << warmup
      << " seed=" << seed << " data=" << data_tag << " crop=" << crop_padding << " hflip=" << hflip << " max_batches=" << max_batches;
    // Options added later: named only when not at their default, so that older
    // checkpoints keep their fingerprint.
    if (l2 != 0.0) s << " l2=" << l2 << " l2_a0=" << l2_a0;
    if (model.rff_sigma != 1.0) s << " rff_sigma=" << model.rff_sigma;
    if (model.trig_period != 0.0) s << " trig_period=" << model.trig_period;
    if (model.householder_basis != "chebyshev") s << " householder_basis=" << model.householder_basis;
    if (model.reflections != 0) s << " reflections=" << model.reflections;
    if (model.block_norm != "group") s << " block_norm=" << model.block_norm;
    if (model.cross_jumps) s << " cross_jumps=1";
    if (world() > 1) s << " ranks=" << world();
    if (sync_batch_norm && world() > 1) s << " sync_bn=1";
    return s.str();
  }
};

/// load_training_state in a data-parallel run of `world` ranks: rank 0 reads the
/// checkpoint and sends its bytes, and every rank loads them (no shared file
/// system needed). With one rank, the plain load.
inline std::map<std::string, std::string> load_training_state_on_ranks(const std::string& path, nn::Module& model,
                                                                       optim::Optimizer& opt, const ResumeCheck& check,
                                                                       int64_t* done, int world) {
  if (world == 1) return load_training_state(path, model, opt, check, done);
  const bool main = dist::is_main();
  std::string bytes;
  if (main) {
    std::ifstream in(path, std::ios::binary);
    NANODE_CHECK(in.good(), path, ": cannot read");
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  bytes = dist::broadcast_string(bytes, 0, "broadcast of the checkpoint");
  if (main) return load_training_state(path, model, opt, check, done);
  char tmpl[] = "/tmp/nanode-resume-XXXXXX";
  const int fd = ::mkstemp(tmpl);
  NANODE_CHECK(fd >= 0, "train: rank ", dist::rank(), ": cannot create a temporary file for the checkpoint");
  ::close(fd);
  const std::string local = tmpl;
  struct Remove {
    std::string p;
    ~Remove() { std::remove(p.c_str()); }
  } remove{local};
  {
    std::ofstream out(local, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    NANODE_CHECK(out.good(), local, ": cannot write the received checkpoint");
  }
  return load_training_state(local, model, opt, check, done);
}

struct EpochMetrics {
  int64_t epoch = 0;
  double train_loss = 0, train_acc = 0, test_loss = 0, test_acc = 0, lr = 0, images_per_s = 0, seconds = 0;
  int64_t peak_activation_bytes = 0;
};

struct TrainResult {
  std::vector<EpochMetrics> epochs;  ///< including those restored on resume
  int64_t parameters = 0, parameter_bytes = 0;
  double final_test_acc() const { return epochs.empty() ? 0.0 : epochs.back().test_acc; }
};

/// A one-line progress bar on stderr: redrawn in place on a terminal, a line per
/// tenth of the epoch otherwise. update()'s acc is left out when negative.
class ProgressBar {
 public:
  ProgressBar(bool on, int64_t epoch, int64_t epochs, int64_t total)
      : on_(on), tty_(on && ::isatty(2)), epoch_(epoch), epochs_(epochs), total_(total) {}
  void update(int64_t done, double loss, double acc, double ips) {
    if (!on_) return;
    const auto now = std::chrono::steady_clock::now();
    const bool last = done == total_;
    if (tty_) {
      if (!last && now - drawn_ < std::chrono::milliseconds(200)) return;
    } else {
      const int64_t tenth = std::max<int64_t>(1, total_ / 10);
      if (!last && done % tenth != 0) return;
    }
    drawn_ = now;
    const int width = 24;
    const int fill = static_cast<int>(width * done / std::max<int64_t>(1, total_));
    const double eta = ips > 0 ? static_cast<double>(total_ - done) * batch_images_ / ips : 0.0;
    char acc_text[32] = "";
    if (acc >= 0) std::snprintf(acc_text, sizeof(acc_text), " acc %.2f%%", 100.0 * acc);
    std::fprintf(stderr, "%sepoch %lld/%lld [%s%s] %lld/%lld loss %.4f%s %.0f %s/s ETA %d:%02d%s",
                 tty_ ? "\r" : "", static_cast<long long>(epoch_ + 1), static_cast<long long>(epochs_),
                 std::string(static_cast<size_t>(fill), '=').c_str(),
                 std::string(static_cast<size_t>(width - fill), ' ').c_str(), static_cast<long long>(done),
                 static_cast<long long>(total_), loss, acc_text, ips, unit_, static_cast<int>(eta) / 60,
                 static_cast<int>(eta) % 60, tty_ ? (last ? "\n" : "") : "\n");
    std::fflush(stderr);
  }
  void set_batch_images(double b) { batch_images_ = b; }
  /// What the rate counts ("img" by default; the video trainer counts frames).
  void set_unit(const char* u) { unit_ = u; }

 private:
  const char* unit_ = "img";
  bool on_, tty_;
  int64_t epoch_, epochs_, total_;
  double batch_images_ = 1;
  std::chrono::steady_clock::time_point drawn_{};
};

/// Correct predictions in logits [N, C] against labels [N].
inline int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  const Tensor l = logits.cpu().to(DType::Float32);
  const int64_t N = l.size(0), C = l.size(1);
  const float* p = l.data<float>();
  const int32_t* y = labels.data<int32_t>();
  int64_t ok = 0;
  for (int64_t n = 0; n < N; ++n) {
    int64_t best = 0;
    for (int64_t c = 1; c < C; ++c)
      if (p[n * C + c] > p[n * C + best]) best = c;
    ok += best == y[n];
  }
  return ok;
}

class Trainer {
 public:
  Trainer(TrainConfig cfg, std::shared_ptr<data::ImageDataset> train, std::shared_ptr<data::ImageDataset> test)
      : cfg_(std::move(cfg)), train_(std::move(train)), test_(std::move(test)) {
    NANODE_CHECK(!cfg_.resume || !cfg_.out_dir.empty(), "train: --resume needs --out-dir (where the checkpoint is)");
    world_ = cfg_.world(), rank_ = world_ > 1 ? dist::rank() : 0;
    main_ = rank_ == 0;
    if (!main_) cfg_.progress = false;  // one progress bar, one set of files: rank 0's
    if (!cfg_.out_dir.empty() && main_)
      folder_ = OutputFolder(cfg_.out_dir, cfg_.resume, cfg_.overwrite, {"metrics.csv", "checkpoint.safetensors"},
                             "checkpoint.safetensors", "train");
    NANODE_CHECK(cfg_.epochs >= 1, "train: epochs must be >= 1, got ", cfg_.epochs);
    NANODE_CHECK(cfg_.batch_size >= 1 && cfg_.eval_batch_size >= 1, "train: batch sizes must be >= 1");
    const auto shape = train_->image_shape();
    NANODE_CHECK(shape == test_->image_shape(), "train: train and test images differ in shape");
    NANODE_CHECK(shape[1] == shape[2], "train: images must be square, got ", shape[1], "x", shape[2]);
    cfg_.model.in_channels = shape[0], cfg_.model.image_size = shape[1], cfg_.model.classes = train_->classes();
    manual_seed(cfg_.seed);
    cfg_.model.seed = cfg_.seed;  // random features draw from the run's seed
    model_ = std::make_shared<Classifier>(cfg_.model);
    if (cfg_.l2 != 0.0) {
      NANODE_CHECK(std::isfinite(cfg_.l2) && cfg_.l2 > 0, "train: l2 must be a positive finite number, got ", cfg_.l2);
      (void)tv::l2_penalty(*model_, cfg_.l2_a0);  // a model without coefficients: the error says so, before training
    }
    if (cfg_.device.is_cuda())
      NANODE_CHECK(cuda_device_count() > cfg_.device.index, "train: ", cfg_.device, " requested, but this program has ",
                   cuda_device_count(), " CUDA device(s) (backend: ", cuda_backend_name(), ")");
    model_->to(cfg_.device);
    if (world_ > 1) dist::broadcast_state(*model_);  // rank 0's initial parameters and buffers everywhere
    named_params_ = model_->named_parameters();
    auto params = model_->parameters();
    if (world_ > 1) reducer_ = std::make_unique<dist::GradientReducer>(params);
    if (cfg_.optimizer == "sgd") {
      optim::SGDOptions o;
      o.lr = cfg_.lr, o.momentum = cfg_.momentum, o.weight_decay = cfg_.weight_decay, o.nesterov = cfg_.momentum > 0;
      opt_ = std::make_unique<optim::SGD>(params, o);
    } else if (cfg_.optimizer == "adam" || cfg_.optimizer == "adamw") {
      optim::AdamOptions o;
      o.lr = cfg_.lr, o.weight_decay = cfg_.weight_decay, o.decoupled_weight_decay = cfg_.optimizer == "adamw";
      opt_ = std::make_unique<optim::Adam>(params, o);
    } else {
      fail("unknown optimizer '", cfg_.optimizer, "' (valid: adam, adamw, sgd)");
    }
    const auto [mean, sd] = data::channel_stats(*train_);
    data::LoaderOptions lo;
    lo.batch_size = cfg_.batch_size, lo.seed = cfg_.seed, lo.crop_padding = cfg_.crop_padding, lo.hflip = cfg_.hflip;
    lo.mean = mean, lo.stddev = sd;
    lo.rank = rank_, lo.world = world_;
    train_loader_ = std::make_unique<data::DataLoader>(train_, lo);
    lo.shuffle = false, lo.crop_padding = 0, lo.hflip = false, lo.batch_size = cfg_.eval_batch_size;
    lo.whole_batches_by_rank = true;  // evaluation: one process's batches, dealt out to the ranks
    test_loader_ = std::make_unique<data::DataLoader>(test_, lo);
    if (world_ > 1 && cfg_.sync_batch_norm) {
      // A rank with no images in the last global batch could not take part in
      // the statistics' sums.
      const int64_t last = train_->size() % (cfg_.batch_size * world_);
      NANODE_CHECK(last == 0 || last >= world_, "train: synchronised batch norm: the last global batch holds ", last,
                   " images, fewer than the ", world_, " ranks; choose a batch size or --limit-train that leaves at "
                   "least one image per rank");
    }
    per_epoch_ = train_loader_->batches_per_epoch();
    if (cfg_.max_batches > 0) per_epoch_ = std::min(per_epoch_, cfg_.max_batches);
    sched_.base = cfg_.lr, sched_.total = per_epoch_ * cfg_.epochs, sched_.warmup = cfg_.warmup;
    if (cfg_.schedule == "cosine") {
      sched_.kind = optim::Schedule::Kind::Cosine;
    } else if (cfg_.schedule == "step") {
      sched_.kind = optim::Schedule::Kind::Step;  // x0.1 after half the steps
      sched_.every = std::max<int64_t>(1, sched_.total / 2);
    } else {
      NANODE_CHECK(cfg_.schedule == "constant", "unknown schedule '", cfg_.schedule,
                   "' (valid: constant, cosine, step)");
    }
  }

  Classifier& model() { return *model_; }
  int64_t batches_per_epoch() const { return per_epoch_; }
  /// The gradient all-reduce's buckets in a data-parallel run (0 in one process).
  size_t gradient_buckets() const { return reducer_ ? reducer_->buckets() : 0; }
  std::string checkpoint_path() const { return cfg_.out_dir + "/checkpoint.safetensors"; }
  std::string metrics_path() const { return cfg_.out_dir + "/metrics.csv"; }

  /// Trains to cfg.epochs (from the last checkpoint when resuming).
  TrainResult run(const std::function<void(const EpochMetrics&)>& on_epoch = {}) {
    TrainResult r;
    r.parameters = model_->num_parameters();
    r.parameter_bytes = r.parameters * static_cast<int64_t>(sizeof(float));
    anomaly::Guard detect(cfg_.detect_anomaly || anomaly::enabled());
    int64_t start = 0;
    if (cfg_.resume) start = restore(r);
    if (!cfg_.out_dir.empty() && main_ && start == 0) write_csv_header();
    for (int64_t epoch = start; epoch < cfg_.epochs; ++epoch) {
      EpochMetrics m = train_epoch(epoch);
      // Per-rank batch norm leaves each rank its own running statistics: rank 0's
      // are evaluated and saved, everywhere.
      if (world_ > 1 && !cfg_.sync_batch_norm)
        for (auto& [n, b] : model_->named_buffers()) dist::broadcast(b.mutable_data(), 0, "broadcast of '" + n + "'");
      evaluate(m);
      r.epochs.push_back(m);
      if (!cfg_.out_dir.empty() && main_) {
        append_csv(m);
        if (guard_.diverging())
          std::fprintf(stderr, "train: the run is diverging: no checkpoint after epoch %lld (the last one is kept)\n",
                       static_cast<long long>(epoch + 1));
        else
          save_checkpoint(epoch + 1, r);
      }
      if (on_epoch) on_epoch(m);
    }
    return r;
  }

  /// Test loss and accuracy of the current model.
  void evaluate(EpochMetrics& m) {
    model_->eval();
    NoGradGuard ng;
    SyncScope sync(false);  // evaluation: each batch alone, whichever rank has it
    test_loader_->start_epoch(0);
    data::Batch b;
    double loss = 0;
    int64_t correct = 0, seen = 0;
    while (test_loader_->next(b)) {
      Var logits = model_->forward(Var(b.images.to(cfg_.device)));
      const int64_t n = b.labels.size(0);
      loss += cross_entropy(logits, b.labels).item() * static_cast<double>(n);
      correct += count_correct(logits.data(), b.labels);
      seen += n;
    }
    std::vector<double> sums{loss, static_cast<double>(correct), static_cast<double>(seen)};
    if (world_ > 1) dist::all_reduce_sum(sums, "evaluation sums");
    m.test_loss = sums[0] / sums[2];
    m.test_acc = sums[1] / sums[2];
  }

 private:
  /// Synchronised batch norm on (in training, when asked) or off, for a scope.
  struct SyncScope {
    explicit SyncScope(bool on) : prev(dist::sync_batch_norm()) { dist::set_sync_batch_norm(on); }
    ~SyncScope() { dist::set_sync_batch_norm(prev); }
    bool prev;
  };

  EpochMetrics train_epoch(int64_t epoch) {
    model_->train();
    SyncScope sync(cfg_.sync_batch_norm && world_ > 1);
    EpochMetrics m;
    m.epoch = epoch + 1;
    train_loader_->start_epoch(epoch);
    ProgressBar bar(cfg_.progress, epoch, cfg_.epochs, per_epoch_);
    const auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0;
    int64_t correct = 0, seen = 0, seen_global = 0;
    data::Batch b;
    for (int64_t k = 0; k < per_epoch_ && train_loader_->next(b); ++k) {
      const int64_t step = epoch * per_epoch_ + k;
      m.lr = sched_.at(step);
      opt_->set_lr(m.lr);
      opt_->zero_grad();
      const int64_t n = b.labels.size(0);
      guard_.at(epoch, k, m.lr);
      try {
        PeakMemoryScope scope(cfg_.device);
        if (n == 0) {  // a rank with no share of a short last batch: no data term
          if (cfg_.l2 != 0.0)  // the penalty's gradient, as every rank adds it
            reducer_->backward(tv::l2_penalty(*model_, cfg_.l2_a0) * cfg_.l2);
          else
            reducer_->begin(), reducer_->finish();
        } else {
          Var logits = model_->forward(Var(b.images.to(cfg_.device)));
          Var loss = cross_entropy(logits, b.labels);
          const double lv = loss.item();  // reported: the data term
          // Ranks average their gradients; weighting each rank's mean loss by its
          // share of the global batch makes that average the global batch's mean.
          if (world_ > 1 && n * world_ != b.global_count)
            loss = loss * (static_cast<double>(n * world_) / static_cast<double>(b.global_count));
          if (cfg_.l2 != 0.0) loss = loss + tv::l2_penalty(*model_, cfg_.l2_a0) * cfg_.l2;
          guard_.loss(cfg_.l2 != 0.0 ? loss.item() : lv);
          if (reducer_)
            reducer_->backward(loss);
          else
            loss.backward();
          loss_sum += lv * static_cast<double>(n);
          correct += count_correct(logits.data(), b.labels);
        }
        guard_.gradients(named_params_);
        m.peak_activation_bytes = std::max(m.peak_activation_bytes, scope.peak_above_start());
      } catch (const dist::TimeoutError&) {
        throw;  // as it is: the program ends the job
      } catch (const Error& e) {
        // An op's own error (a NaN input to a solve, an anomaly): say where it happened.
        const std::string what = e.what();
        if (what.rfind("train:", 0) == 0) throw;
        fail("train: at ", guard_.where(), ": ", what);
      }
      opt_->step();
      guard_.parameters(named_params_);
      seen += n;
      seen_global += world_ > 1 ? b.global_count : n;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      // The bar (rank 0's): its own loss and accuracy, all ranks' images per second.
      bar.set_batch_images(static_cast<double>(seen_global) / static_cast<double>(k + 1));
      bar.update(k + 1, loss_sum / static_cast<double>(std::max<int64_t>(1, seen)),
                 static_cast<double>(correct) / static_cast<double>(std::max<int64_t>(1, seen)),
                 static_cast<double>(seen_global) / std::max(1e-9, secs));
    }
    m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<double> sums{loss_sum, static_cast<double>(correct), static_cast<double>(seen), m.seconds,
                             static_cast<double>(m.peak_activation_bytes)};
    if (world_ > 1) dist::all_reduce_sum(sums, "training sums");
    m.train_loss = sums[0] / std::max(1.0, sums[2]);
    m.train_acc = sums[1] / std::max(1.0, sums[2]);
    m.seconds = sums[3] / world_;  // the ranks' mean
    m.images_per_s = sums[2] / std::max(1e-9, m.seconds);
    m.peak_activation_bytes = static_cast<int64_t>(sums[4] / world_);  // per rank, the ranks' mean
    return m;
  }

  static constexpr const char* kCsvHeader =
      "epoch,train_loss,train_acc,test_loss,test_acc,lr,images_per_s,seconds,peak_activation_bytes";

  void write_csv_header() {
    std::ofstream out(metrics_path(), std::ios::trunc);
    NANODE_CHECK(out.good(), metrics_path(), ": cannot write");
    out << kCsvHeader << "\n";
  }
  /// One metrics row: rounded for the CSV, or exact (`precise`) for the checkpoint,
  /// so that a resumed run reports the restored epochs exactly as they were.
  static std::string csv_row(const EpochMetrics& m, bool precise = false) {
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  precise ? "%lld,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%lld"
                          : "%lld,%.6f,%.6f,%.6f,%.6f,%.6g,%.1f,%.2f,%lld",
                  static_cast<long long>(m.epoch),
                  m.train_loss, m.train_acc, m.test_loss, m.test_acc, m.lr, m.images_per_s, m.seconds,
                  static_cast<long long>(m.peak_activation_bytes));
    return buf;
  }
  void append_csv(const EpochMetrics& m) {
    std::ofstream out(metrics_path(), std::ios::app);
    NANODE_CHECK(out.good(), metrics_path(), ": cannot append");
    out << csv_row(m) << "\n";
  }

  void save_checkpoint(int64_t epochs_done, const TrainResult& r) {
    std::string rows;
    for (const auto& m : r.epochs) rows += csv_row(m, true) + "\n";
    save_training_state(checkpoint_path(), *model_, *opt_,
                        {{"format", "nanode-classifier-1"},
                         {"config", cfg_.fingerprint()},
                         {"epochs_done", std::to_string(epochs_done)},
                         {"metrics", rows}});
  }

  /// Loads the last checkpoint; returns the epochs it had completed.
  int64_t restore(TrainResult& r) {
    NANODE_CHECK(!cfg_.out_dir.empty(), "train: --resume needs an output directory");
    // Rank 0's folder: the other ranks get the checkpoint from it.
    NANODE_CHECK(!main_ || data::file_exists(checkpoint_path()), "train: --resume, but there is no checkpoint at ",
                 checkpoint_path());
    ResumeCheck check;
    check.format = "nanode-classifier-1", check.fingerprint = cfg_.fingerprint(), check.max_epochs = cfg_.epochs;
    check.steps_per_epoch = per_epoch_;
    check.state_per_param = cfg_.optimizer == "sgd" ? (cfg_.momentum > 0 ? 1 : 0) : 2;
    int64_t done = 0;
    const auto meta = load_training_state_on_ranks(checkpoint_path(), *model_, *opt_, check, &done, world_);
    // The metrics of the restored epochs: back into the result and the CSV.
    const auto rows_it = meta.find("metrics");
    NANODE_CHECK(rows_it != meta.end(), checkpoint_path(), ": not a nanode classifier checkpoint (no 'metrics')");
    std::istringstream rows(rows_it->second);
    std::string line;
    std::ofstream csv;
    if (main_) {
      csv.open(metrics_path(), std::ios::trunc);
      NANODE_CHECK(csv.good(), metrics_path(), ": cannot write");
      csv << kCsvHeader << "\n";
    }
    while (std::getline(rows, line)) {
      if (line.empty()) continue;
      EpochMetrics m;
      long long ep = 0, peak = 0;
      const int got = std::sscanf(line.c_str(), "%lld,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lld", &ep, &m.train_loss,
                                  &m.train_acc, &m.test_loss, &m.test_acc, &m.lr, &m.images_per_s, &m.seconds, &peak);
      NANODE_CHECK(got == 9, checkpoint_path(), ": malformed metrics row '", line, "'");
      m.epoch = ep, m.peak_activation_bytes = peak;
      if (main_) csv << csv_row(m) << "\n";
      r.epochs.push_back(m);
    }
    if (cfg_.progress)
      std::fprintf(stderr, "resumed from %s after epoch %lld\n", checkpoint_path().c_str(), static_cast<long long>(done));
    return done;
  }

  TrainConfig cfg_;
  OutputFolder folder_;  // locked for the trainer's lifetime
  StepGuard guard_{"train"};
  std::vector<std::pair<std::string, Var>> named_params_;
  std::shared_ptr<data::ImageDataset> train_, test_;
  std::shared_ptr<Classifier> model_;
  std::unique_ptr<optim::Optimizer> opt_;
  std::unique_ptr<data::DataLoader> train_loader_, test_loader_;
  optim::Schedule sched_;
  int64_t per_epoch_ = 0;
  int rank_ = 0, world_ = 1;
  bool main_ = true;
  std::unique_ptr<dist::GradientReducer> reducer_;
};

}  // namespace nanode::models
