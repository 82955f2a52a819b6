// The video trainer: SVG-LP with VGG blocks ("svg"), autonomous ODE blocks
// ("auto") or time-varying NANODE blocks ("nanode") on Moving Fashion-MNIST
// (generated from Debian's Fashion-MNIST), Moving MNIST (generated from MNIST's
// IDX files, or the standard mnist_test_seq.npy) or BAIR robot pushing. Shows a
// progress bar; after each epoch prints the -ELBO per predicted frame with its
// reconstruction (MSE per pixel) and KL (nats) terms, and MSE / PSNR / SSIM of the
// best of k prior samples on held-out sequences; writes metrics.csv, a PNG strip
// (truth, posterior reconstruction, prior samples) and an atomic checkpoint to
// --out-dir; --resume continues a killed run.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <string>

#include "cli_common.hpp"
#include "dist_session.hpp"
#include "nanode/models/video_trainer.hpp"
#include "nanode/nanode.hpp"

using namespace nanode;

int main(int argc, char** argv) {
  // Under mpirun: one rank of a data-parallel run (nanode::dist); else a world of one.
  const cli::DistSession session(&argc, &argv, "train_video");
  if (!session.ok()) return 1;
  CLI::App app{"nanode: train a video-prediction model (SVG-LP with VGG or NANODE blocks)"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  models::VideoTrainConfig cfg;
  std::string solver = "euler", gradient = "direct", device = "cpu";
  int threads = 2;
  app.add_option("--dataset", cfg.dataset, "data set")->check(CLI::IsMember(models::video_dataset_names()));
  app.add_option("--data-path", cfg.data_path,
                 "the data: a directory of IDX digit files (moving-*; default: Debian's), mnist_test_seq.npy "
                 "(moving-mnist-file; default data/mnist_test_seq.npy) or BAIR's processed_data (default "
                 "data/bair/processed_data)");
  app.add_option("--model", cfg.model.model, "svg, auto or nanode")->check(CLI::IsMember(models::video_model_names()));
  app.add_option("--arch", cfg.model.arch, "frame encoder/decoder: vgg (VGG-64) or dcgan (DCGAN-64; --model svg only)")
      ->check(CLI::IsMember({"vgg", "dcgan"}));
  app.add_option("--family", cfg.model.family, "nanode's dynamics family")->check(CLI::IsMember(tv::family_names()));
  app.add_option("--order", cfg.model.order, "the family's basis order")->check(cli::integer(1, 1000));
  app.add_option("--steps", cfg.model.steps, "solver steps per ODE block (dt = 1/steps)")->check(cli::integer(1, 10000));
  app.add_option("--solver", solver, "Runge-Kutta method")->check(CLI::IsMember(ode::method_names()));
  app.add_option("--gradient", gradient, "gradient mode of the ODE blocks")
      ->check(CLI::IsMember({"direct", "adjoint", "checkpoint", "reversible"}));
  app.add_option("--width", cfg.model.width, "channels of the first VGG block (SVG: 64)")->check(cli::integer(1, 4096));
  app.add_option("--g-dim", cfg.model.g_dim, "frame encoding size")->check(cli::integer(1, 65536));
  app.add_option("--z-dim", cfg.model.z_dim, "latent size")->check(cli::integer(1, 65536));
  app.add_option("--rnn-size", cfg.model.rnn_size, "LSTM hidden size")->check(cli::integer(1, 65536));
  app.add_option("--n-past", cfg.n_past, "conditioning frames")->check(cli::integer(1, 1000));
  app.add_option("--n-future", cfg.n_future, "predicted frames")->check(cli::integer(1, 1000));
  app.add_option("--beta", cfg.beta, "KL weight")->check(cli::number(0.0, 1e6));
  app.add_option("--lr", cfg.lr, "Adam learning rate")->check(cli::number(1e-12, 10.0));
  app.add_option("--epochs", cfg.epochs, "training epochs")->check(cli::integer(1, 1000000));
  app.add_option("--batch-size", cfg.batch_size, "sequences per batch")->check(cli::integer(1, 100000));
  app.add_option("--train-sequences", cfg.train_sequences, "sequences per epoch (generated data)")
      ->check(cli::integer(1, 100000000));
  app.add_option("--test-sequences", cfg.test_sequences, "held-out sequences")->check(cli::integer(1, 1000000));
  app.add_option("--digits", cfg.num_digits, "objects per generated sequence")->check(cli::integer(1, 8));
  app.add_flag("--deterministic", cfg.deterministic, "generated objects reflect at the walls (default: new velocity)");
  app.add_option("--samples", cfg.samples, "prior samples per test sequence (best of k)")->check(cli::integer(1, 1000));
  app.add_option("--max-batches", cfg.max_batches, "batches per epoch at most (0: all)")->check(cli::integer(0, 100000000));
  app.add_option("--seed", cfg.seed, "random seed")->check(cli::unsigned64());
  app.add_option("--threads", threads, "CPU threads")->check(cli::integer(1, 4096));
  app.add_option("--device", device, "where to train: cpu, cuda or cuda:<index>");
  app.add_option("--out-dir", cfg.out_dir, "where metrics.csv, samples_epoch<N>.png and checkpoint.safetensors go");
  app.add_flag("--resume", cfg.resume, "continue from the checkpoint in --out-dir");
  app.add_flag("--overwrite", cfg.overwrite, "replace the results of an earlier run in --out-dir");
  app.add_flag("--detect-anomaly", cfg.detect_anomaly,
               "check every op's result and gradient for NaN/inf and name the first op that makes one (slow)");
  bool quiet = false;
  app.add_flag("--quiet", quiet, "no progress bar");
  app.add_flag("--sync-bn", cfg.sync_batch_norm,
               "under mpirun: batch norm with the statistics of the global batch (sums added over ranks); default: "
               "each rank's own");
  bool done = false;
  if (const int rc = cli::parse(app, argc, argv, done); done) return rc;
  if (!session.main_rank()) quiet = true;  // only rank 0 prints

  try {
    set_num_threads(threads);
    cfg.device = Device::parse(device);
    if (dist::world_size() > 1 && cfg.device.is_cuda() && device == "cuda" && cuda_device_count() > 0)
      cfg.device = Device::cuda(dist::local_rank() % cuda_device_count());  // one GPU per rank
    cfg.model.method = solver;
    cfg.model.gradient = ode::parse_gradient(gradient);
    ode::check_method(solver, cfg.model.gradient);
    cfg.progress = !quiet;
    if (cfg.resume && cfg.out_dir.empty()) throw Error("--resume needs --out-dir (where the checkpoint is)");
    auto [train, test] = models::load_video_dataset(cfg);
    models::VideoTrainer trainer(cfg, train, test);
    const auto fs = train->frame_shape();
    session.say("%s: %lld train / %lld test sequences of %lld frames %lldx%lldx%lld (%lld past, %lld future); model %s "
                "(%s order %d, %lld steps/block, %s, %s gradients; width %lld, g %lld, z %lld; %lld parameters) on "
                "%s; %lld epochs of %lld batches of %lld\n",
                train->describe().c_str(), static_cast<long long>(train->size()), static_cast<long long>(test->size()),
                static_cast<long long>(train->frames()), static_cast<long long>(fs[0]), static_cast<long long>(fs[1]),
                static_cast<long long>(fs[2]), static_cast<long long>(cfg.n_past), static_cast<long long>(cfg.n_future),
                cfg.model.model.c_str(), cfg.model.model == "nanode" ? cfg.model.family.c_str() : "-",
                cfg.model.order, static_cast<long long>(cfg.model.steps), solver.c_str(), gradient.c_str(),
                static_cast<long long>(cfg.model.width), static_cast<long long>(cfg.model.g_dim),
                static_cast<long long>(cfg.model.z_dim), static_cast<long long>(trainer.model().num_parameters()),
                cfg.device.str().c_str(), static_cast<long long>(cfg.epochs),
                static_cast<long long>(trainer.batches_per_epoch()), static_cast<long long>(cfg.batch_size));
    if (dist::world_size() > 1)
      session.say("data-parallel: %d ranks (%s), global batch %lld = %lld x %d, batch norm %s\n", dist::world_size(),
                  dist::backend().name().c_str(), static_cast<long long>(cfg.batch_size * dist::world_size()),
                  static_cast<long long>(cfg.batch_size), dist::world_size(),
                  cfg.sync_batch_norm ? "synchronised" : "per rank (--sync-bn: global)");
    if (cfg.model.model != "svg")
      session.say("gradients: %s\n", ode::gradient_summary(solver, cfg.model.gradient, cfg.model.steps).c_str());
    auto result = trainer.run([&session](const models::VideoEpochMetrics& m) {
      session.say("epoch %lld: train -ELBO/frame %.5f (MSE/pixel %.5f, KL %.3f nats) | test -ELBO/frame %.5f (MSE "
                  "%.5f, KL %.3f) | best of k: MSE %.5f, PSNR %.2f dB, SSIM %.4f | %.0f frames/s, %.1f s, peak "
                  "activation %.1f MiB\n",
                  static_cast<long long>(m.epoch), m.train_elbo, m.train_mse, m.train_kl, m.test_elbo, m.test_mse,
                  m.test_kl, m.best_mse, m.best_psnr, m.best_ssim, m.frames_per_s, m.seconds,
                  static_cast<double>(m.peak_activation_bytes) / (1 << 20));
    });
    int64_t peak = 0;
    double secs = 0;
    for (const auto& m : result.epochs) peak = std::max(peak, m.peak_activation_bytes), secs += m.seconds;
    session.say("peak activation memory %.1f MiB, parameter memory %.2f MiB, training time %.0f s\n",
                static_cast<double>(peak) / (1 << 20), static_cast<double>(result.parameter_bytes) / (1 << 20), secs);
    if (!cfg.out_dir.empty())
      session.say("metrics: %s/metrics.csv, strips: %s/samples_epoch<N>.png, checkpoint: %s/checkpoint.safetensors\n",
                  cfg.out_dir.c_str(), cfg.out_dir.c_str(), cfg.out_dir.c_str());
    const auto& last = result.epochs.back();
    session.say("test -ELBO per frame: %.6f (MSE %.6f, KL %.4f nats); best of %lld: PSNR %.2f dB, SSIM %.4f\n",
                last.test_elbo, last.test_mse, last.test_kl, static_cast<long long>(cfg.samples), last.best_psnr,
                last.best_ssim);
  } catch (const std::exception& e) {
    return session.fail(e);
  }
  return 0;
}
