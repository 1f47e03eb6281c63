// Fashion-LT on disk: the scene PNGs (drawn and encoded in parallel), the list files,
// labels.txt and stats.json; and build_fashion_lt, which loads, plans and writes.
#include "cprfl/fashion_lt/fashion_lt.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <fstream>
#include <mutex>
#include <thread>
#include <utility>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "cprfl/common/error.h"
#include "cprfl/common/progress.h"
#include "cprfl/io/atomic_file.h"

namespace cprfl {
namespace {

constexpr int kPngCompression = 6;  // fixed, so the same scene always gives the same bytes

std::string list_text(const FashionLtSplit& split) {
  std::string text;
  for (std::size_t i = 0; i < split.scenes.size(); ++i) {
    text += fashion_lt_image_path(split.name, i);
    for (int label : split.scenes[i].labels()) text += " " + std::to_string(label);
    text += "\n";
  }
  return text;
}

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) fail_in(path, "cannot write file");
}

}  // namespace

std::string fashion_lt_image_path(const std::string& split, std::size_t index) {
  char name[64];
  std::snprintf(name, sizeof name, "images/%s/%06zu.png", split.c_str(), index);
  return name;
}

void write_fashion_lt(const FashionLtBenchmark& benchmark, const FashionMnist& train_items,
                      const FashionMnist& test_items, const std::string& fashion_mnist_dir,
                      const std::string& out_dir, int threads) {
  struct Job {
    const FashionLtSplit* split;
    const FashionMnist* items;
    std::size_t index;
  };
  std::vector<Job> jobs;
  for (auto [split, items] : {std::pair{&benchmark.train, &train_items}, std::pair{&benchmark.test, &test_items}}) {
    make_directories(out_dir + "/images/" + split->name);
    for (std::size_t i = 0; i < split->scenes.size(); ++i) jobs.push_back({split, items, i});
  }

  // PNG encoding is the slow part and each scene is independent: workers take the next
  // job; the main thread draws the progress bar.
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = std::min<int>(threads, static_cast<int>(jobs.size()));
  std::atomic<std::size_t> next{0}, done{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    const std::vector<int> png_params{cv::IMWRITE_PNG_COMPRESSION, kPngCompression};
    try {
      while (!failed) {
        std::size_t j = next++;
        if (j >= jobs.size()) break;
        const Job& job = jobs[j];
        auto pixels = render_scene(job.split->scenes[job.index], *job.items, benchmark.config.layout);
        int side = benchmark.config.layout.canvas;
        cv::Mat image(side, side, CV_8UC1, pixels.data());
        std::vector<std::uint8_t> png;
        std::string path = out_dir + "/" + fashion_lt_image_path(job.split->name, job.index);
        if (!cv::imencode(".png", image, png, png_params)) fail_in(path, "PNG encoding failed");
        write_bytes(path, png);
        ++done;
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  {
    ProgressBar bar("fashion-lt scenes", static_cast<std::int64_t>(jobs.size()), "img");
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) workers.emplace_back(work);
    while (done < jobs.size() && !failed) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      bar.update(static_cast<std::int64_t>(done.load()));
    }
    for (auto& worker : workers) worker.join();
    if (error) std::rethrow_exception(error);
    bar.finish();
  }

  std::string labels;
  for (const auto& name : fashion_mnist_class_names()) labels += name + "\n";
  write_file_atomic(out_dir + "/labels.txt", labels);
  write_file_atomic(out_dir + "/train.txt", list_text(benchmark.train));
  write_file_atomic(out_dir + "/test.txt", list_text(benchmark.test));
  write_file_atomic(out_dir + "/stats.json", fashion_lt_stats(benchmark, fashion_mnist_dir).dump(2) + "\n");
}

FashionLtBenchmark build_fashion_lt(const std::string& fashion_mnist_dir, const std::string& out_dir,
                                    const FashionLtConfig& config, int threads) {
  validate(config);
  FashionMnist train = load_fashion_mnist(fashion_mnist_dir, FashionSplit::kTrain);
  FashionMnist test = load_fashion_mnist(fashion_mnist_dir, FashionSplit::kTest);
  FashionLtBenchmark benchmark = plan_fashion_lt(train, test, config);
  make_directories(out_dir);
  write_fashion_lt(benchmark, train, test, fashion_mnist_dir, out_dir, threads);
  return benchmark;
}

}  // namespace cprfl
