// The trainer: a NANODE image classifier (the paper's Fig. 1) on Fashion-MNIST,
// MNIST, CIFAR-10 or CIFAR-100. Shows a progress bar, evaluates on the test split
// every epoch, writes metrics.csv and an atomic safetensors checkpoint to
// --out-dir, and continues a killed run with --resume.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <string>

#include "cli_common.hpp"
#include "dist_session.hpp"
#include "nanode/dist/nccl.hpp"
#include "nanode/models/trainer.hpp"
#include "nanode/nanode.hpp"

using namespace nanode;

int main(int argc, char** argv) {
  // Under mpirun: one rank of a data-parallel run (nanode::dist); else a world of one.
  const cli::DistSession session(&argc, &argv, "train_classifier");
  if (!session.ok()) return 1;
  CLI::App app{"nanode: train a NANODE image classifier"};
  // An option given twice keeps its last value: scripts/train.sh passes defaults
  // that the user's own arguments then override.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  models::TrainConfig cfg;
  std::string dataset = "fashion-mnist", data_dir, solver = "euler", gradient = "direct", widths_arg;
  int threads = 2;
  int64_t limit_train = 0, limit_test = 0;
  app.add_option("--dataset", dataset, "data set")->check(CLI::IsMember(data::dataset_names()));
  app.add_option("--data-dir", data_dir, "directory holding the data set's files (default: its usual place)");
  std::string models_list;
  for (const auto& n : models::classifier_model_names()) models_list += (models_list.empty() ? "" : ", ") + n;
  app.add_option("--model", cfg.model.model, "dynamics family: " + models_list + " (a suffix -d sets the order)");
  app.add_option("--order", cfg.model.order, "basis order d (pieces, features, gated dynamics, ...)")
      ->check(cli::integer(1, 1000));
  app.add_option("--rff-sigma", cfg.model.rff_sigma,
                 "random: each block draws frequencies zeta ~ N(0, sigma^2) and phases from --seed")
      ->check(cli::number(1e-6, 1e6));
  app.add_option("--trig-period", cfg.model.trig_period,
                 "t-nanode: 0 = the paper's frequencies 1..d (eq. 8); T > 0: frequencies 2 pi n / T")
      ->check(cli::number(0.0, 1e6));
  app.add_option("--householder-basis", cfg.model.householder_basis,
                 "householder: the basis of the reflection vectors (order --order)")
      ->check(CLI::IsMember({"constant", "bucket", "monomial", "chebyshev", "legendre", "trig", "random"}));
  app.add_option("--reflections", cfg.model.reflections,
                 "householder: reflections per kernel (0: C*9, all of the orthogonal group)")
      ->check(cli::integer(0, 100000));
  app.add_option("--block-norm", cfg.model.block_norm, "the norm inside each block's dynamics")
      ->check(CLI::IsMember({"group", "batch", "none"}));
  app.add_flag("--sync-bn", cfg.sync_batch_norm,
               "under mpirun: batch norm with the statistics of the global batch (sums added over ranks), as one "
               "process computes them; default: each rank's own");
  app.add_flag("--cross-jumps", cfg.model.cross_jumps,
               "b-nanode: let the fixed steps cross bucket edges (a bucket count that does not divide --steps is "
               "otherwise an error)");
  app.add_option("--l2", cfg.l2, "L2 penalty on the time-basis coefficients (not A_0, not Householder vectors)")
      ->check(cli::number(0.0, 1e3));
  app.add_flag("--l2-a0", cfg.l2_a0, "the L2 penalty also covers A_0, the constant term's coefficients");
  app.add_option("--steps", cfg.model.steps, "solver steps per NANODE block (dt = 1/steps)")
      ->check(cli::integer(1, 100000));
  app.add_option("--solver", solver, "Runge-Kutta method")
      ->check(CLI::IsMember(ode::method_names()));
  app.add_option("--gradient", gradient,
                 "gradient mode: direct (exact, memory grows with steps), checkpoint (exact), reversible (exact at "
                 "constant memory; needs --solver alf), adjoint (approximate at few steps)")
      ->check(CLI::IsMember({"direct", "adjoint", "checkpoint", "reversible"}));
  app.add_option("--widths", cfg.model.widths, "channels per stage, one NANODE block each")
      ->delimiter(',')
      ->check(cli::integer(1, 4096))
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--epochs", cfg.epochs, "training epochs")->check(cli::integer(1, 100000));
  app.add_option("--batch-size", cfg.batch_size, "training batch size")->check(cli::integer(1, 65536));
  app.add_option("--optimizer", cfg.optimizer, "optimizer")->check(CLI::IsMember({"adam", "adamw", "sgd"}));
  app.add_option("--lr", cfg.lr, "base learning rate")->check(cli::number(1e-12, 10.0));
  app.add_option("--momentum", cfg.momentum, "SGD momentum (Nesterov when > 0)")->check(cli::number(0.0, 0.999999));
  app.add_option("--weight-decay", cfg.weight_decay, "weight decay")->check(cli::number(0.0, 10.0));
  app.add_option("--schedule", cfg.schedule, "learning-rate schedule")
      ->check(CLI::IsMember({"constant", "cosine", "step"}));
  app.add_option("--warmup", cfg.warmup, "linear warm-up steps")->check(cli::integer(0, 1000000000));
  app.add_option("--crop-padding", cfg.crop_padding, "random-crop padding in pixels (0: no crops)")
      ->check(cli::integer(0, 64));
  app.add_flag("--hflip", cfg.hflip, "random horizontal flips");
  app.add_option("--seed", cfg.seed, "random seed (initialisation, order, augmentation)")->check(cli::unsigned64());
  app.add_option("--threads", threads, "CPU threads")->check(cli::integer(1, 1024));
  std::string device = "cpu";
  app.add_option("--device", device, "where to train: cpu, cuda or cuda:<index>");
  app.add_option("--max-batches", cfg.max_batches, "batches per epoch at most (0: all)")
      ->check(cli::integer(0, 1000000000));
  app.add_option("--limit-train", limit_train, "use the first N training images (0: all)")
      ->check(cli::integer(0, 1000000000));
  app.add_option("--limit-test", limit_test, "use the first N test images (0: all)")->check(cli::integer(0, 1000000000));
  app.add_option("--out-dir", cfg.out_dir, "where metrics.csv and checkpoint.safetensors go (created)");
  app.add_flag("--resume", cfg.resume, "continue from the checkpoint in --out-dir");
  app.add_flag("--overwrite", cfg.overwrite, "replace the results of an earlier run in --out-dir");
  app.add_flag("--detect-anomaly", cfg.detect_anomaly,
               "check every op's result and gradient for NaN/inf and name the first op that makes one (slow)");
  bool quiet = false;
  app.add_flag("--quiet", quiet, "no progress bar");
  bool done = false;
  if (const int rc = cli::parse(app, argc, argv, done); done) return rc;
  // Only rank 0 prints (the usage errors above are the same on every rank).
  if (!session.main_rank()) quiet = true;
  auto say = [&session](const char* fmt, auto... args) { session.say(fmt, args...); };

  try {
    set_num_threads(threads);
    cfg.device = Device::parse(device);
    if (dist::world_size() > 1 && cfg.device.is_cuda()) {
      // One GPU per rank: plain "cuda" means the rank's own among this host's GPUs.
      if (device == "cuda" && cuda_device_count() > 0) cfg.device = Device::cuda(dist::local_rank() % cuda_device_count());
      // Gradients of CUDA tensors over NCCL when built with it (else through host memory over MPI).
      if (dist::built_with_nccl()) dist::use_nccl(cfg.device.index);
    }
    cfg.model.method = solver;
    cfg.model.gradient = ode::parse_gradient(gradient);
    cfg.progress = !quiet;
    if (cfg.resume && cfg.out_dir.empty()) throw Error("--resume needs --out-dir (where the checkpoint is)");
    auto [train, test] = data::load_dataset(dataset, data_dir);
    train = data::head(train, limit_train);
    test = data::head(test, limit_test);
    cfg.data_tag = dataset + "@" + (data_dir.empty() ? data::default_data_dir(dataset) : data_dir) + ":" +
                   std::to_string(train->size()) + "/" + std::to_string(test->size());
    models::Trainer trainer(cfg, train, test);
    say("%s: %lld train / %lld test images of %lldx%lldx%lld; model %s (order %d, %lld parameters, "
                "%lld steps/block, %s, %s gradients) on %s; %lld epochs of %lld batches\n",
                dataset.c_str(), static_cast<long long>(train->size()), static_cast<long long>(test->size()),
                static_cast<long long>(train->image_shape()[0]), static_cast<long long>(train->image_shape()[1]),
                static_cast<long long>(train->image_shape()[2]), cfg.model.model.c_str(), trainer.model().order(),
                static_cast<long long>(trainer.model().num_parameters()), static_cast<long long>(cfg.model.steps),
                solver.c_str(), gradient.c_str(), cfg.device.str().c_str(), static_cast<long long>(cfg.epochs),
                static_cast<long long>(trainer.batches_per_epoch()));
    const ode::Options& so = trainer.model().ode_options();
    say("gradients: %s\n", ode::gradient_summary(so.method, so.gradient, so.steps).c_str());
    if (!so.split_at_jumps && trainer.model().base_model() == "b-nanode" && so.steps % trainer.model().order() != 0)
      say("buckets: --cross-jumps: the %lld fixed steps cross the edges of the %d buckets; the weights switch "
                  "at the stage times that land in a new bucket, and buckets that no stage lands in never train\n",
                  static_cast<long long>(so.steps), trainer.model().order());
    if (dist::world_size() > 1)
      say("data-parallel: %d ranks (%s), global batch %lld = %lld x %d, batch norm %s, gradients averaged in %zu "
          "buckets\n",
          dist::world_size(), dist::backend().name().c_str(),
          static_cast<long long>(cfg.batch_size * dist::world_size()), static_cast<long long>(cfg.batch_size),
          dist::world_size(),
          cfg.sync_batch_norm ? "synchronised (the global batch's statistics)" : "per rank (--sync-bn: global)",
          trainer.gradient_buckets());
    auto result = trainer.run([&say](const models::EpochMetrics& m) {
      say("epoch %lld: train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% | %.0f img/s, %.1f s, "
                  "peak activation %.1f MiB\n",
                  static_cast<long long>(m.epoch), m.train_loss, 100 * m.train_acc, m.test_loss, 100 * m.test_acc,
                  m.images_per_s, m.seconds, static_cast<double>(m.peak_activation_bytes) / (1 << 20));
    });
    int64_t peak = 0;
    double secs = 0;
    for (const auto& m : result.epochs) peak = std::max(peak, m.peak_activation_bytes), secs += m.seconds;
    int64_t block_bytes = 0;  // the ODE blocks' own parameters (no stem, downsampling or head)
    for (const auto& [n, p] : trainer.model().named_parameters())
      if (n.rfind("block", 0) == 0) block_bytes += static_cast<int64_t>(p.data().nbytes());
    say("peak activation memory %.1f MiB, parameter memory %.2f MiB (ODE blocks %.2f MiB), training time "
                "%.0f s\n",
                static_cast<double>(peak) / (1 << 20), static_cast<double>(result.parameter_bytes) / (1 << 20),
                static_cast<double>(block_bytes) / (1 << 20), secs);
    if (!cfg.out_dir.empty())
      say("metrics: %s/metrics.csv, checkpoint: %s/checkpoint.safetensors\n", cfg.out_dir.c_str(),
                  cfg.out_dir.c_str());
    if (dist::world_size() > 1)
      say("data-parallel: rank 0 waited %.1f s in %lld collectives (gradient all-reduces not hidden by the backward "
          "pass, batch-norm sums, metrics, and any wait for a slower rank)\n",
          dist::waited_seconds(), static_cast<long long>(dist::collectives_waited()));
    say("test accuracy: %.2f%%\n", 100.0 * result.final_test_acc());
  } catch (const std::exception& e) {
    return session.fail(e);
  }
  return 0;
}
