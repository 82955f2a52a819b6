#pragma once
// The image-classification data sets by name: fashion-mnist, mnist (IDX, gzipped
// or not), cifar10, cifar100 (binary). A missing data set is an error that says
// where it was looked for and how to get it.
#include <sys/stat.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nanode/data/loader.hpp"

namespace nanode::data {

inline const std::vector<std::string>& dataset_names() {
  static const std::vector<std::string> n{"fashion-mnist", "mnist", "cifar10", "cifar100"};
  return n;
}

/// Where the data set is looked for when no directory is given.
inline std::string default_data_dir(const std::string& name) {
  if (name == "fashion-mnist") return "/usr/share/datasets/fashion-mnist";
  if (name == "mnist") return "/usr/share/datasets/mnist";
  if (name == "cifar10") return "data/cifar-10-batches-bin";
  if (name == "cifar100") return "data/cifar-100-binary";
  std::string valid;
  for (const auto& n : dataset_names()) valid += (valid.empty() ? "" : ", ") + n;
  fail("unknown data set '", name, "' (valid: ", valid, ")");
}

inline bool file_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

inline std::string how_to_get(const std::string& name) {
  if (name == "fashion-mnist")
    return "install Debian's package (apt install dataset-fashion-mnist), or put train-images-idx3-ubyte.gz, "
           "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from "
           "https://github.com/zalandoresearch/fashion-mnist there";
  if (name == "mnist")
    return "put the four MNIST IDX files (train-images-idx3-ubyte[.gz], ...) from http://yann.lecun.com/exdb/mnist/ there";
  if (name == "cifar10")
    return "download https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz and unpack it (data_batch_1.bin .. "
           "data_batch_5.bin, test_batch.bin)";
  return "download https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz and unpack it (train.bin, test.bin)";
}

/// The train and test splits of data set `name` from `dir` (default_data_dir when empty).
inline std::pair<std::shared_ptr<ImageDataset>, std::shared_ptr<ImageDataset>> load_dataset(const std::string& name,
                                                                                            std::string dir) {
  if (dir.empty()) dir = default_data_dir(name);
  else (void)default_data_dir(name);  // validates the name
  auto missing = [&](const std::string& what) -> std::string {
    return name + " not found: " + what + " is missing in " + dir + "; " + how_to_get(name) +
           " (or pass --data-dir)";
  };
  if (name == "fashion-mnist" || name == "mnist") {
    auto find = [&](const std::string& stem) {
      for (const std::string& p : {dir + "/" + stem + ".gz", dir + "/" + stem})
        if (file_exists(p)) return p;
      fail(missing(stem + "[.gz]"));
    };
    auto train = read_idx_pair(find("train-images-idx3-ubyte"), find("train-labels-idx1-ubyte"));
    auto test = read_idx_pair(find("t10k-images-idx3-ubyte"), find("t10k-labels-idx1-ubyte"));
    return {std::make_shared<ImageDataset>(std::move(train)), std::make_shared<ImageDataset>(std::move(test))};
  }
  const bool c100 = name == "cifar100";
  std::vector<std::string> train_files, test_files;
  if (c100) {
    train_files = {dir + "/train.bin"}, test_files = {dir + "/test.bin"};
  } else {
    for (int i = 1; i <= 5; ++i) train_files.push_back(dir + "/data_batch_" + std::to_string(i) + ".bin");
    test_files = {dir + "/test_batch.bin"};
  }
  for (const auto& f : train_files)
    if (!file_exists(f)) fail(missing(f.substr(dir.size() + 1)));
  for (const auto& f : test_files)
    if (!file_exists(f)) fail(missing(f.substr(dir.size() + 1)));
  return {std::make_shared<ImageDataset>(read_cifar(train_files, c100)),
          std::make_shared<ImageDataset>(read_cifar(test_files, c100))};
}

/// Per-channel mean and standard deviation of a data set's pixels in [0, 1].
inline std::pair<std::vector<float>, std::vector<float>> channel_stats(const ImageDataset& ds) {
  const auto& s = ds.set();
  const int64_t per = s.h * s.w;
  std::vector<float> mean(static_cast<size_t>(s.c)), sd(static_cast<size_t>(s.c));
  for (int64_t c = 0; c < s.c; ++c) {
    double sum = 0, sq = 0;
    for (int64_t n = 0; n < s.n; ++n) {
      const uint8_t* p = s.images.data() + (n * s.c + c) * per;
      for (int64_t k = 0; k < per; ++k) {
        const double v = p[k] / 255.0;
        sum += v, sq += v * v;
      }
    }
    const double cnt = static_cast<double>(s.n * per), m = sum / cnt;
    mean[static_cast<size_t>(c)] = static_cast<float>(m);
    sd[static_cast<size_t>(c)] = static_cast<float>(std::sqrt(std::max(1e-12, sq / cnt - m * m)));
  }
  return {mean, sd};
}

/// The first `n` items of a data set (all when n <= 0 or n >= size).
inline std::shared_ptr<ImageDataset> head(const std::shared_ptr<ImageDataset>& ds, int64_t n) {
  if (n <= 0 || n >= ds->size()) return ds;
  ImageSet s = ds->set();
  s.n = n;
  s.images.resize(static_cast<size_t>(n * s.c * s.h * s.w));
  s.labels.resize(static_cast<size_t>(n));
  return std::make_shared<ImageDataset>(std::move(s));
}

}  // namespace nanode::data
