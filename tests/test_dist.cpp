// nanode::dist: the sharded sampler, the leaf-ready hook, the gradient reducer,
// synchronised and per-rank batch norm, and training with 2 ranks x batch B/2
// against 1 process x batch B. Run twice by ctest: as one process (the cases that
// need 2 ranks say so and return) and under `mpiexec -np 2` (every case).
// `test_dist --timeout-demo`: rank 1 never joins an all-reduce; rank 0 must fail
// with the timeout's message (ctest matches it).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>
#include <thread>

#include "nanode/dist/dist.hpp"
#include "nanode/models/trainer.hpp"
#include "nanode/models/video_trainer.hpp"
#include "nanode/nanode.hpp"
#include "test_files.hpp"

using namespace nanode;
using nanode::testing::quadrants;

namespace {

bool two_ranks() {
  // Under ctest's mpiexec run, NANODE_TEST_EXPECT_RANKS=2: a launcher that made
  // two worlds of one must fail here, not skip.
  if (const char* e = std::getenv("NANODE_TEST_EXPECT_RANKS"))
    REQUIRE(dist::world_size() == std::atoi(e));
  if (dist::world_size() == 2) return true;
  WARN("needs 2 ranks (ctest's dist_two_ranks runs it under mpiexec -np 2); world size here is "
       << dist::world_size());
  return false;
}

/// Images that name their sample: pixel k of sample i is (3 i + k) mod 251.
data::ImageSet numbered(int64_t n) {
  data::ImageSet s;
  s.n = n, s.c = 1, s.h = 2, s.w = 2, s.classes = 10;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < 4; ++k) s.images.push_back(static_cast<uint8_t>((3 * i + k) % 251));
    s.labels.push_back(static_cast<int32_t>(i % 10));
  }
  return s;
}

std::vector<float> cat_rows(const std::vector<Tensor>& parts) {
  std::vector<float> out;
  for (const auto& t : parts) {
    auto v = t.to_vector<float>();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

/// The largest |a - b| / (1 + |b|) over two models' parameters.
double max_param_diff(nn::Module& a, nn::Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  double worst = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    const auto va = pa[i].second.data().to_vector<float>(), vb = pb[i].second.data().to_vector<float>();
    REQUIRE(va.size() == vb.size());
    for (size_t k = 0; k < va.size(); ++k)
      worst = std::max(worst, std::abs(static_cast<double>(va[k]) - vb[k]) / (1.0 + std::abs(vb[k])));
  }
  return worst;
}

/// Whether every rank holds exactly rank 0's parameters.
bool ranks_agree(nn::Module& m) {
  bool same = true;
  for (auto& [n, p] : m.named_parameters()) {
    Tensor mine = p.data().clone(), root = p.data().clone();
    dist::broadcast(root, 0);
    same = same && mine.to_vector<float>() == root.to_vector<float>();
  }
  std::vector<double> all{same ? 1.0 : 0.0};
  dist::all_reduce_sum(all);
  return all[0] == dist::world_size();
}

}  // namespace

TEST_CASE("sampler: the ranks' shares of a global batch are one process's batch, the last one split evenly",
          "[dist][sampler]") {
  auto ds = std::make_shared<data::ImageDataset>(numbered(37));
  for (int world : {1, 2, 3}) {
    data::LoaderOptions one;
    one.batch_size = 4 * world, one.seed = 7;
    data::DataLoader ref(ds, one);
    std::vector<std::unique_ptr<data::DataLoader>> ranks;
    for (int r = 0; r < world; ++r) {
      data::LoaderOptions o;
      o.batch_size = 4, o.seed = 7, o.rank = r, o.world = world;
      ranks.push_back(std::make_unique<data::DataLoader>(ds, o));
    }
    for (int64_t epoch : {0, 1}) {
      ref.start_epoch(epoch);
      for (auto& l : ranks) {
        l->start_epoch(epoch);
        REQUIRE(l->batches_per_epoch() == ref.batches_per_epoch());
      }
      for (int64_t b = 0; b < ref.batches_per_epoch(); ++b) {
        INFO("world " << world << ", epoch " << epoch << ", batch " << b);
        const data::Batch whole = ref.make_batch(b);
        std::vector<Tensor> imgs, labs;
        int64_t got = 0, most = 0, least = 1 << 30;
        for (auto& l : ranks) {
          const data::Batch part = l->make_batch(b);
          CHECK(part.global_count == whole.images.size(0));
          got += part.images.size(0);
          most = std::max(most, part.images.size(0)), least = std::min(least, part.images.size(0));
          if (part.images.size(0) > 0) imgs.push_back(part.images), labs.push_back(part.labels.to(DType::Float32));
        }
        CHECK(got == whole.images.size(0));
        CHECK(most - least <= 1);  // as even as it goes
        CHECK(cat_rows(imgs) == whole.images.to_vector<float>());
        CHECK(cat_rows(labs) == whole.labels.to(DType::Float32).to_vector<float>());
      }
    }
  }
  // Evaluation: whole batches dealt out, rank r taking r, r + world, ...
  data::LoaderOptions o;
  o.batch_size = 5, o.shuffle = false, o.whole_batches_by_rank = true, o.world = 3;
  std::vector<int64_t> seen;
  for (int r = 0; r < 3; ++r) {
    o.rank = r;
    data::DataLoader l(ds, o);
    CHECK(l.batches_per_epoch() == (r < 2 ? 3 : 2));  // 8 batches of 5 (the last of 2): 3, 3, 2
    l.start_epoch(0);
    data::Batch b;
    for (int64_t k = 0; l.next(b); ++k) {
      CHECK(b.index == r + 3 * k);
      seen.push_back(b.index);
    }
  }
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7});
  o.rank = 3;
  CHECK_THROWS_WITH(data::DataLoader(ds, o), Catch::Contains("rank 3 outside a world of 3"));
}

TEST_CASE("leaf-ready hook: each parameter once, with its final gradient, the last layer's first", "[dist][hook]") {
  manual_seed(3);
  nn::Linear a(5, 6), b(6, 6), c(6, 2);
  Var x(Tensor::uniform({4, 5}, -1, 1));
  // b is used twice: its gradient is final only after its second use's backward.
  Var loss = sum(square(c.forward(tanh(b.forward(tanh(b.forward(tanh(a.forward(x)))))))));
  std::vector<std::pair<VarImpl*, std::vector<float>>> seen;
  {
    LeafReadyHook hook;
    hook.arm([&](VarImpl* v) { seen.emplace_back(v, v->grad.to_vector<float>()); });
    loss.backward();
  }
  const std::vector<Var> params{a.weight, a.bias, b.weight, b.bias, c.weight, c.bias};
  REQUIRE(seen.size() == params.size());
  auto when = [&](const Var& p) {
    for (size_t i = 0; i < seen.size(); ++i)
      if (seen[i].first == p.impl().get()) return static_cast<int>(i);
    return -1;
  };
  for (const auto& p : params) {
    INFO(p.describe());
    const int i = when(p);
    REQUIRE(i >= 0);
    CHECK(seen[static_cast<size_t>(i)].second == p.grad().to_vector<float>());  // final when reported
  }
  CHECK(when(c.weight) < when(b.weight));
  CHECK(when(b.weight) < when(a.weight));
  // After disarming, backward() reports nothing.
  seen.clear();
  Var l2 = sum(square(c.forward(tanh(a.forward(x)))));
  l2.backward();
  CHECK(seen.empty());
}

TEST_CASE("gradient reducer: the ranks' mean gradient, buckets started during the backward pass",
          "[dist][reducer]") {
  manual_seed(11);  // the same model on every rank
  std::vector<std::shared_ptr<nn::Linear>> layers;
  for (int k = 0; k < 4; ++k) layers.push_back(std::make_shared<nn::Linear>(6, 6));
  std::vector<Var> params;
  for (auto& l : layers) params.push_back(l->weight), params.push_back(l->bias);
  // Each rank its own data.
  Generator g(100 + static_cast<uint64_t>(dist::rank()));
  const Tensor x = Tensor::uniform({3, 6}, -1, 1, g);
  auto loss_of = [&] {
    Var h(x);
    for (auto& l : layers) h = tanh(l->forward(h));
    return sum(square(h));
  };
  loss_of().backward();
  std::vector<Tensor> expect;
  for (auto& p : params) expect.push_back(p.grad().clone());
  dist::all_reduce_sum(expect);  // the ranks' sum
  for (auto& p : params) p.zero_grad();

  dist::GradientReducer reducer(params, /*bucket_bytes=*/6 * 6 * 4 + 6 * 4);  // one layer per bucket
  CHECK(reducer.buckets() == 4);
  reducer.backward(loss_of());
  for (size_t i = 0; i < params.size(); ++i) {
    INFO(params[i].describe());
    const auto got = params[i].grad().to_vector<float>(), sum = expect[i].to_vector<float>();
    for (size_t k = 0; k < got.size(); ++k) CHECK(got[k] == Approx(sum[k] / dist::world_size()).margin(1e-7));
  }
  // The last three layers' buckets are final before the first layer's backward runs.
  CHECK(reducer.started_early() >= 3);

  // A parameter no rank used keeps no gradient (an optimizer leaves it alone); one
  // that only rank 0 used gets rank 0's gradient over the rank count.
  nn::Linear spare(6, 6), rank0_only(6, 1);
  std::vector<Var> ps{spare.weight, spare.bias, rank0_only.weight, rank0_only.bias};
  dist::GradientReducer r2(ps);
  Var l = sum(square(Var(x)));
  if (dist::rank() == 0) l = l + sum(rank0_only.forward(Var(x)));
  Var xin(x, true);
  l = l + sum(xin);  // a graph with a leaf outside the reducer's parameters
  Tensor expect_w;
  if (dist::rank() == 0) {
    Var probe = sum(rank0_only.forward(Var(x)));
    expect_w = grad(probe, {rank0_only.weight})[0];
  }
  r2.backward(l);
  CHECK_FALSE(spare.weight.grad().defined());
  CHECK_FALSE(spare.bias.grad().defined());
  REQUIRE(rank0_only.weight.grad().defined());
  if (dist::rank() == 0) {
    const auto got = rank0_only.weight.grad().to_vector<float>(), want = expect_w.to_vector<float>();
    for (size_t k = 0; k < got.size(); ++k) CHECK(got[k] == Approx(want[k] / dist::world_size()).margin(1e-6));
  }
  // A second backward pass inside one step is refused, not silently dropped.
  r2.begin();
  Var a = sum(rank0_only.forward(Var(x)));
  a.backward(Tensor(), true);
  CHECK_THROWS_WITH(a.backward(), Catch::Contains("a second backward pass"));
}

TEST_CASE("synchronised batch norm is one batch norm over the global batch; per-rank uses the shard's",
          "[dist][batchnorm]") {
  if (!two_ranks()) return;
  const int r = dist::rank();
  Generator g(5);  // the same global batch on both ranks
  const Tensor x = Tensor::uniform({8, 3, 2, 2}, -2, 3, g), w = Tensor::uniform({8, 3, 2, 2}, -1, 1, g);
  const Tensor gamma0 = Tensor::uniform({3}, 0.5, 1.5, g), beta0 = Tensor::uniform({3}, -0.5, 0.5, g);
  for (bool relu : {false, true}) {
    INFO("relu " << relu);
    // One process, the whole batch.
    Var xf(x.clone(), true), gf(gamma0.clone(), true), bf(beta0.clone(), true);
    Tensor rmf = Tensor::zeros({3}), rvf = Tensor::ones({3});
    Var yf = batch_norm(xf, rmf, rvf, gf, bf, true, 0.1, 1e-5, relu);
    sum(yf * Var(w)).backward();
    // This rank's half, synchronised.
    dist::set_sync_batch_norm(true);
    Var xr(x.slice(0, 4 * r, 4 * r + 4).clone(), true), gr(gamma0.clone(), true), br(beta0.clone(), true);
    Tensor rmr = Tensor::zeros({3}), rvr = Tensor::ones({3});
    Var yr = batch_norm(xr, rmr, rvr, gr, br, true, 0.1, 1e-5, relu);
    sum(yr * Var(w.slice(0, 4 * r, 4 * r + 4).clone())).backward();
    dist::set_sync_batch_norm(false);
    auto near = [](const Tensor& a, const Tensor& b) {
      const auto va = a.to_vector<float>(), vb = b.to_vector<float>();
      REQUIRE(va.size() == vb.size());
      for (size_t k = 0; k < va.size(); ++k) CHECK(va[k] == Approx(vb[k]).margin(2e-5));
    };
    near(yr.data(), yf.data().slice(0, 4 * r, 4 * r + 4).clone());
    near(xr.grad(), xf.grad().slice(0, 4 * r, 4 * r + 4).clone());
    near(rmr, rmf);
    near(rvr, rvf);
    // The affine parameters' gradients: the ranks' sum is the whole batch's.
    std::vector<Tensor> affine{gr.grad().clone(), br.grad().clone()};
    dist::all_reduce_sum(affine);
    near(affine[0], gf.grad());
    near(affine[1], bf.grad());

    // Per rank: the shard's own statistics, not the global batch's.
    Var xp(x.slice(0, 4 * r, 4 * r + 4).clone());
    Tensor rmp = Tensor::zeros({3}), rvp = Tensor::ones({3});
    const Tensor yp = batch_norm(xp, rmp, rvp, Var(gamma0), Var(beta0), true, 0.1, 1e-5, relu).data();
    Tensor rma = Tensor::zeros({3}), rva = Tensor::ones({3});
    const Tensor alone = batch_norm(Var(x.slice(0, 4 * r, 4 * r + 4).clone()), rma, rva, Var(gamma0), Var(beta0),
                                    true, 0.1, 1e-5, relu)
                             .data();
    CHECK(yp.to_vector<float>() == alone.to_vector<float>());
    double off = 0;
    const auto vp = yp.to_vector<float>(), vf = yf.data().slice(0, 4 * r, 4 * r + 4).clone().to_vector<float>();
    for (size_t k = 0; k < vp.size(); ++k) off = std::max(off, static_cast<double>(std::abs(vp[k] - vf[k])));
    CHECK(off > 1e-2);
  }
}

TEST_CASE("broadcast_state gives every rank rank 0's parameters and buffers", "[dist][broadcast]") {
  if (!two_ranks()) return;
  manual_seed(static_cast<uint64_t>(dist::rank()));  // different on each rank
  nn::Linear l(4, 3);
  nn::BatchNorm bn(3);
  bn.running_mean.mutable_data().copy_(Tensor::full({3}, dist::rank() + 1.0));
  CHECK_FALSE(ranks_agree(l));
  dist::broadcast_state(l);
  dist::broadcast_state(bn);
  CHECK(ranks_agree(l));
  CHECK(bn.running_mean.data().to_vector<float>() == std::vector<float>(3, 1.0f));
}

namespace {
models::TrainConfig small_run() {
  models::TrainConfig cfg;
  cfg.model.model = "t-nanode", cfg.model.order = 2, cfg.model.widths = {4, 8}, cfg.model.steps = 2;
  // SGD: Adam's first steps divide by |g| and would magnify rounding-level differences.
  cfg.optimizer = "sgd", cfg.lr = 0.05, cfg.momentum = 0.9;
  cfg.epochs = 1, cfg.progress = false, cfg.crop_padding = 1, cfg.hflip = true, cfg.seed = 3;
  return cfg;
}
}  // namespace

TEST_CASE("training: 2 ranks x batch B/2 give 1 process x batch B's parameters (synchronised batch norm)",
          "[dist][train]") {
  if (!two_ranks()) return;
  // 67 images in global batches of 16: four full ones, then 3 (2 on rank 0, 1 on rank 1).
  auto train = std::make_shared<data::ImageDataset>(quadrants(67, 12, 1));
  auto test = std::make_shared<data::ImageDataset>(quadrants(30, 12, 2));
  models::TrainConfig one = small_run();
  one.batch_size = 16, one.distributed = false;
  models::TrainConfig two = small_run();
  two.batch_size = 8, two.sync_batch_norm = true;

  models::Trainer dist_run(two, train, test);
  const auto rd = dist_run.run();
  CHECK(ranks_agree(dist_run.model()));
  // Rank 0 trains the one-process reference alone (no collectives).
  double diff = 0, acc_one = 0;
  if (dist::is_main()) {
    models::Trainer ref(one, train, test);
    const auto r1 = ref.run();
    diff = max_param_diff(dist_run.model(), ref.model());
    acc_one = r1.final_test_acc();
    CHECK(rd.epochs[0].train_loss == Approx(r1.epochs[0].train_loss).epsilon(1e-5));
    CHECK(rd.final_test_acc() == Approx(acc_one));
    auto bd = dist_run.model().named_buffers(), b1 = ref.model().named_buffers();
    for (size_t i = 0; i < bd.size(); ++i) {
      INFO(bd[i].first);
      const auto vd = bd[i].second.data().to_vector<float>(), v1 = b1[i].second.data().to_vector<float>();
      for (size_t k = 0; k < vd.size(); ++k) CHECK(vd[k] == Approx(v1[k]).margin(1e-5));
    }
  }
  INFO("largest relative parameter difference " << diff);
  CHECK(diff < 2e-5);

  // Per-rank batch norm: each shard's statistics, so no longer the one-process
  // run (the ranks still agree with each other).
  models::TrainConfig per_rank = two;
  per_rank.sync_batch_norm = false;
  models::Trainer pr(per_rank, train, test);
  pr.run();
  CHECK(ranks_agree(pr.model()));
  if (dist::is_main()) {
    models::Trainer ref(one, train, test);
    ref.run();
    CHECK(max_param_diff(pr.model(), ref.model()) > 1e-4);
  }
  dist::barrier();
}

TEST_CASE("training: a distributed run resumed after a kill equals the uninterrupted run", "[dist][train]") {
  if (!two_ranks()) return;
  auto train = std::make_shared<data::ImageDataset>(quadrants(48, 12, 4));
  auto test = std::make_shared<data::ImageDataset>(quadrants(20, 12, 5));
  models::TrainConfig cfg = small_run();
  cfg.batch_size = 8, cfg.epochs = 2, cfg.sync_batch_norm = true;
  // Rank 0's folders (the other ranks write nothing).
  const std::string base = dist::broadcast_string(dist::is_main() ? nanode::testing::tmp_path("dist") : "");
  if (dist::is_main()) REQUIRE(std::system(("mkdir -p " + base + "/full " + base + "/part").c_str()) == 0);
  cfg.out_dir = base + "/full";
  models::Trainer full(cfg, train, test);
  const auto rf = full.run();
  cfg.out_dir = base + "/part";
  {
    models::Trainer t(cfg, train, test);
    try {
      t.run([](const models::EpochMetrics&) { throw std::runtime_error("killed"); });
    } catch (const std::runtime_error&) {
    }
  }
  cfg.resume = true;
  models::Trainer resumed(cfg, train, test);
  const auto rr = resumed.run();
  REQUIRE(rr.epochs.size() == 2);
  CHECK(rr.epochs[1].test_loss == rf.epochs[1].test_loss);
  CHECK(max_param_diff(resumed.model(), full.model()) == 0.0);
  CHECK(ranks_agree(resumed.model()));
}

TEST_CASE("video: a distributed run (batch norm per rank) resumed after a kill equals the uninterrupted run",
          "[dist][video]") {
  if (!two_ranks()) return;
  auto digits = std::make_shared<data::Array>();
  digits->dims = {2, 28, 28};
  digits->bytes.assign(2 * 784, 0);
  for (int64_t k = 0; k < 2; ++k)
    for (int64_t r = 0; r < 10; ++r)
      for (int64_t c = 0; c < 10; ++c) digits->bytes[static_cast<size_t>(k * 784 + (r + 4 + k) * 28 + c + 9)] = 255;
  models::VideoTrainConfig c;
  c.model.model = "nanode", c.model.width = 2, c.model.g_dim = 6, c.model.z_dim = 2, c.model.rnn_size = 8;
  c.model.steps = 2;
  c.n_past = 2, c.n_future = 2, c.epochs = 2, c.batch_size = 1, c.samples = 2, c.progress = false;
  const std::string base = dist::broadcast_string(dist::is_main() ? nanode::testing::tmp_path("video") : "");
  auto run = [&](const std::string& out, bool resume, bool killed) {
    c.out_dir = base + "/" + out, c.resume = resume;
    if (dist::is_main()) REQUIRE(std::system(("mkdir -p " + c.out_dir).c_str()) == 0);
    data::MovingDigitsOptions o;
    o.frames = 4, o.sequences = 4, o.seed = 1;
    auto train = std::make_shared<data::MovingDigits>(digits, "squares", o);
    o.sequences = 3, o.seed = 2;
    auto test = std::make_shared<data::MovingDigits>(digits, "squares", o);
    auto t = std::make_unique<models::VideoTrainer>(c, train, test);
    CHECK(t->batches_per_epoch() == 2);  // 4 sequences in global batches of 1 x 2 ranks
    models::VideoTrainResult r;
    try {
      r = t->run([&](const models::VideoEpochMetrics& m) {
        if (killed && m.epoch == 1) throw std::runtime_error("killed");
      });
    } catch (const std::runtime_error&) {
    }
    return std::make_pair(r, std::move(t));
  };
  auto whole = run("whole", false, false);
  REQUIRE(whole.first.epochs.size() == 2);
  CHECK(std::isfinite(whole.first.epochs[1].test_elbo));
  CHECK(ranks_agree(whole.second->model()));
  if (dist::is_main()) CHECK(data::file_exists(c.out_dir + "/samples_epoch2.png"));
  run("part", false, true);
  auto resumed = run("part", true, false);
  REQUIRE(resumed.first.epochs.size() == 2);
  CHECK(resumed.first.epochs[1].test_elbo == whole.first.epochs[1].test_elbo);
  CHECK(max_param_diff(resumed.second->model(), whole.second->model()) == 0.0);
}

int main(int argc, char** argv) {
  dist::init(&argc, &argv);
  set_num_threads(1);
  int rc = 0;
  if (argc > 1 && std::string(argv[1]) == "--timeout-demo") {
    dist::set_timeout(2);
    try {
      if (dist::rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(30));  // never joins
      std::vector<double> v{1.0};
      dist::all_reduce_sum(v);
      std::printf("the all-reduce completed: no timeout\n");
    } catch (const dist::TimeoutError& e) {
      std::fprintf(stderr, "%s\n", e.what());
      std::fflush(stderr);
      dist::abort(3);
    }
    return 1;
  }
  rc = Catch::Session().run(argc, argv);
  // Every rank reports; a failure on one makes the job fail.
  dist::finalize();
  return rc;
}
