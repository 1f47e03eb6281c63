// Loader throughput: images/s through decode + training augmentation + float CHW, for
//   (a) 64×64 grey PNG scenes at 64×64 (synthetic, or a Fashion-LT train list), and
//   (b) 500×375 JPEGs resized to 448×448,
// each with 1 and 2 worker threads and batches of 16 and 32. Also times each pipeline stage
// on one thread, to show where the time goes. Writes bench/results/loader.json.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <jpeglib.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cprfl/common/error.h"
#include "cprfl/data/asl_augment.h"
#include "cprfl/data/image.h"
#include "cprfl/data/list_file.h"
#include "cprfl/data/loader.h"
#include "cprfl/data/transforms.h"
#include "cprfl/io/atomic_file.h"
#include "timing.h"

using namespace cprfl;
using namespace cprfl::bench;
using nlohmann::json;

namespace {

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw Error("cannot write " + path);
}

std::string random_labels(cv::RNG& rng, int classes) {
  std::string text;
  int count = 1 + rng.uniform(0, 3);
  std::vector<int> used;
  for (int i = 0; i < count; ++i) {
    int label = rng.uniform(0, classes);
    if (std::find(used.begin(), used.end(), label) != used.end()) continue;
    used.push_back(label);
    text += " " + std::to_string(label);
  }
  return text;
}

// 64×64 grey scenes like Fashion-LT's: a dark canvas, 1–4 textured items in a 2×2 grid.
std::uint64_t make_grey_scenes(const std::string& dir, int count) {
  cv::RNG rng(1234);
  std::string list;
  std::uint64_t total_bytes = 0;
  for (int i = 0; i < count; ++i) {
    cv::Mat scene(64, 64, CV_8UC1, cv::Scalar(rng.uniform(0, 30)));
    int items = 1 + rng.uniform(0, 4);
    for (int item = 0; item < items; ++item) {
      int cx = 16 + 32 * (item % 2) + rng.uniform(-3, 4), cy = 16 + 32 * (item / 2) + rng.uniform(-3, 4);
      cv::Mat texture(64, 64, CV_8UC1);
      rng.fill(texture, cv::RNG::UNIFORM, 60, 255);
      cv::GaussianBlur(texture, texture, cv::Size(3, 3), 0);
      cv::Mat mask(64, 64, CV_8UC1, cv::Scalar(0));
      cv::ellipse(mask, cv::Point(cx, cy), cv::Size(rng.uniform(6, 14), rng.uniform(6, 14)), rng.uniform(0, 180), 0, 360,
                  cv::Scalar(255), cv::FILLED);
      texture.copyTo(scene, mask);
    }
    std::vector<std::uint8_t> png;
    cv::imencode(".png", scene, png);
    std::string name = "scene" + std::to_string(i) + ".png";
    write_bytes(dir + "/" + name, png);
    total_bytes += png.size();
    list += name + random_labels(rng, 10) + "\n";
  }
  std::ofstream(dir + "/train.txt") << list;
  return total_bytes;
}

// 500×375 photo-like images: a gradient, shapes, edges and multi-scale texture; JPEG quality 90.
std::uint64_t make_jpegs(const std::string& dir, int count) {
  cv::RNG rng(5678);
  std::string list;
  std::uint64_t total_bytes = 0;
  for (int i = 0; i < count; ++i) {
    cv::Mat image(375, 500, CV_8UC3);
    cv::Vec3f top(rng.uniform(0.f, 255.f), rng.uniform(0.f, 255.f), rng.uniform(0.f, 255.f));
    cv::Vec3f bottom(rng.uniform(0.f, 255.f), rng.uniform(0.f, 255.f), rng.uniform(0.f, 255.f));
    for (int y = 0; y < image.rows; ++y) {
      cv::Vec3f colour = top + (bottom - top) * (static_cast<float>(y) / image.rows);
      image.row(y).setTo(cv::Scalar(colour[0], colour[1], colour[2]));
    }
    for (int shape = 0; shape < 25; ++shape) {
      cv::Scalar colour(rng.uniform(0, 256), rng.uniform(0, 256), rng.uniform(0, 256));
      cv::Point a(rng.uniform(0, 500), rng.uniform(0, 375)), b(rng.uniform(0, 500), rng.uniform(0, 375));
      switch (shape % 3) {
        case 0: cv::circle(image, a, rng.uniform(5, 80), colour, cv::FILLED, cv::LINE_AA); break;
        case 1: cv::rectangle(image, a, b, colour, cv::FILLED); break;
        default: cv::line(image, a, b, colour, rng.uniform(1, 6), cv::LINE_AA); break;
      }
    }
    // Texture at three scales (coarse blotches to fine grain), roughly the 1/f spectrum of
    // photos, so the files come out about the size of VOC's (~80-100 KB at this size).
    cv::Mat textured;
    image.convertTo(textured, CV_32FC3);
    for (int scale : {8, 3, 1}) {
      cv::Mat coarse(375 / scale + 1, 500 / scale + 1, CV_32FC3), fine;
      rng.fill(coarse, cv::RNG::NORMAL, 0, 5.0 * scale + 4);
      cv::resize(coarse, fine, image.size(), 0, 0, cv::INTER_CUBIC);
      textured += fine;
    }
    textured.convertTo(image, CV_8UC3);
    std::vector<std::uint8_t> jpeg;
    cv::imencode(".jpg", image, jpeg, {cv::IMWRITE_JPEG_QUALITY, 90});
    std::string name = "photo" + std::to_string(i) + ".jpg";
    write_bytes(dir + "/" + name, jpeg);
    total_bytes += jpeg.size();
    list += name + random_labels(rng, 20) + "\n";
  }
  std::ofstream(dir + "/train.txt") << list;
  return total_bytes;
}

TransformConfig train_transform(int size) {
  TransformConfig config;  // defaults: Pillow bilinear resize, flip, Cutout p=0.5, the authors' RandAugment, ImageNet normalisation
  config.image_size = size;
  return config;
}

struct Scenario {
  std::string name;
  std::string description;
  std::shared_ptr<const ImageDataset> dataset;
};

// CPU time used on the whole machine and by this process, to tell how busy the other
// processes (other helpers share these cores) kept the machine during a measurement.
struct CpuClock {
  double machine_busy_s = 0;
  double self_s = 0;
  static CpuClock now() {
    CpuClock clock;
    std::ifstream in("/proc/stat");
    std::string cpu;
    double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
    clock.machine_busy_s = (user + nice + system + irq + softirq + steal) / static_cast<double>(sysconf(_SC_CLK_TCK));
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    clock.self_s = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                   1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
    return clock;
  }
};

// Waits up to `max_wait` seconds for a second in which other processes use under 0.1 cores.
void wait_until_quiet(double max_wait) {
  auto start = Clock::now();
  while (seconds_since(start) < max_wait) {
    CpuClock before = CpuClock::now();
    std::this_thread::sleep_for(std::chrono::seconds(1));
    CpuClock after = CpuClock::now();
    if ((after.machine_busy_s - before.machine_busy_s) - (after.self_s - before.self_s) < 0.1) return;
  }
}

// Runs whole epochs until `min_seconds` have passed, `trials` times; reports the best
// trial's images/s, each trial's, and how many cores other processes kept busy meanwhile.
json measure(const Scenario& scenario, int workers, int batch_size, double min_seconds, int trials, double quiet_wait) {
  LoaderOptions options;
  options.workers = workers;
  options.batch_size = batch_size;
  options.seed = 1;
  DataLoader loader(scenario.dataset, options);
  json runs = json::array();
  double best = 0, best_others = 0;
  std::int64_t epoch = 0;
  for (int trial = 0; trial < trials; ++trial) {
    wait_until_quiet(quiet_wait);
    std::int64_t images = 0;
    CpuClock cpu_start = CpuClock::now();
    auto start = Clock::now();
    do {
      loader.start_epoch(epoch++);
      while (auto batch = loader.next()) images += batch->images.size(0);
    } while (seconds_since(start) < min_seconds);
    double elapsed = seconds_since(start);
    CpuClock cpu_end = CpuClock::now();
    double others = std::max(0.0, (cpu_end.machine_busy_s - cpu_start.machine_busy_s) - (cpu_end.self_s - cpu_start.self_s)) / elapsed;
    double rate = images / elapsed;
    runs.push_back({{"images_per_second", rate}, {"images", images}, {"seconds", elapsed}, {"other_processes_cores", others}});
    if (rate > best) {
      best = rate;
      best_others = others;
    }
  }
  std::printf("  %-7s workers=%d batch=%-2d  %8.1f images/s best of %d  (other processes used %.2f cores meanwhile)\n",
              scenario.name.c_str(), workers, batch_size, best, trials, best_others);
  std::fflush(stdout);
  return {{"scenario", scenario.name}, {"workers", workers}, {"batch_size", batch_size},
          {"images_per_second", best}, {"other_processes_cores", best_others}, {"trials", runs}};
}

// Time of each stage per image on one thread, in milliseconds.
json stage_profile(const ImageDataset& dataset, const TransformConfig& config, std::size_t limit) {
  std::size_t n = std::min(limit, dataset.size());
  double read_s = 0, decode_s = 0, resize_s = 0, augment_s = 0, to_float_s = 0;
  std::vector<std::uint8_t> bytes;
  std::vector<float> out(static_cast<std::size_t>(3 * config.image_size * config.image_size));
  Normalization normalization = normalization_named(config.normalize);
  for (std::size_t i = 0; i < n; ++i) {
    std::mt19937_64 rng(augmentation_seed(1, 0, i));
    auto t0 = Clock::now();
    read_file_bytes(dataset.image_path(i), bytes);
    auto t1 = Clock::now();
    cv::Mat rgb = decode_image(bytes.data(), bytes.size(), dataset.image_path(i));
    auto t2 = Clock::now();
    rgb = resize_square(rgb, config.image_size, config.resize);
    auto t3 = Clock::now();
    if (config.hflip && bernoulli(rng, 0.5)) cv::flip(rgb, rgb, 1);
    if (bernoulli(rng, config.cutout_prob)) asl_cutout(rgb, config.cutout_factor, rng);
    if (config.randaugment_policy == "asl")
      asl_rand_augment(rgb, rng);
    else
      rand_augment(rgb, config.randaugment_ops, config.randaugment_magnitude, rng);
    auto t4 = Clock::now();
    to_chw_float(rgb, normalization, out.data());
    auto t5 = Clock::now();
    auto d = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    read_s += d(t0, t1);
    decode_s += d(t1, t2);
    resize_s += d(t2, t3);
    augment_s += d(t3, t4);
    to_float_s += d(t4, t5);
  }
  auto ms = [n](double s) { return 1000.0 * s / static_cast<double>(n); };
  json stages = {{"read_file", ms(read_s)}, {"decode", ms(decode_s)}, {"resize", ms(resize_s)},
                 {"flip_cutout_randaugment", ms(augment_s)}, {"to_chw_float_normalise", ms(to_float_s)},
                 {"total", ms(read_s + decode_s + resize_s + augment_s + to_float_s)}, {"images", n}};
  std::printf("  stages (ms/image, 1 thread): read %.3f decode %.3f resize %.3f augment %.3f to-float %.3f\n",
              ms(read_s), ms(decode_s), ms(resize_s), ms(augment_s), ms(to_float_s));
  return stages;
}

// Per-op cost of RandAugment at 448×448 (ms), to spot an expensive op.
json op_profile(int size) {
  cv::RNG rng(9);
  cv::Mat base(size, size, CV_8UC3);
  rng.fill(base, cv::RNG::UNIFORM, 0, 256);
  json ops;
  for (int op = 0; op < kAugmentOpCount; ++op) {
    const int repeats = 20;
    auto start = Clock::now();
    for (int r = 0; r < repeats; ++r) {
      cv::Mat image = base.clone();
      apply_augment_op(image, static_cast<AugmentOp>(op), 0.9, r % 2);
    }
    ops[augment_op_name(static_cast<AugmentOp>(op))] = 1000.0 * seconds_since(start) / repeats;
  }
  return ops;
}

std::string first_line_with(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return line.substr(line.find(':') + 2);
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Loader throughput benchmark"};
  std::string fashion_dir;
  std::string out_path = std::string(CPRFL_SOURCE_DIR) + "/bench/results/loader.json";
  int grey_count = 2000, jpeg_count = 300;
  double min_seconds = 2.0;
  int trials = 3;
  double quiet_wait = 0;
  app.add_option("--fashion-dir", fashion_dir, "Fashion-LT folder (train.txt, labels.txt) instead of synthetic scenes");
  app.add_option("--out", out_path, "where to write the JSON results")->capture_default_str();
  app.add_option("--grey-count", grey_count, "synthetic 64x64 grey PNG scenes")->capture_default_str();
  app.add_option("--jpeg-count", jpeg_count, "synthetic 500x375 JPEGs")->capture_default_str();
  app.add_option("--min-seconds", min_seconds, "minimum measuring time per trial")->capture_default_str();
  app.add_option("--trials", trials, "trials per configuration (the best is reported)")->capture_default_str();
  app.add_option("--quiet-wait", quiet_wait,
                 "before each trial, wait up to this many seconds for other processes to leave the CPU idle")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    std::string load_before = load_average();
    std::printf("load average before: %s\n", load_before.c_str());
    auto scratch = std::filesystem::temp_directory_path() / ("cprfl-bench-loader-" + std::to_string(::getpid()));
    std::filesystem::create_directories(scratch / "grey");
    std::filesystem::create_directories(scratch / "jpeg");

    std::vector<Scenario> scenarios;
    json data_info;
    {
      Scenario grey{"grey64", "", nullptr};
      TransformConfig config = train_transform(64);
      if (!fashion_dir.empty()) {
        int classes = static_cast<int>(read_labels(fashion_dir + "/labels.txt").size());
        grey.dataset = std::make_shared<ImageDataset>(read_image_list(fashion_dir + "/train.txt", classes), fashion_dir,
                                                      classes, config);
        grey.description = "Fashion-LT train scenes from " + fashion_dir;
      } else {
        std::uint64_t bytes = make_grey_scenes((scratch / "grey").string(), grey_count);
        grey.dataset = std::make_shared<ImageDataset>(read_image_list((scratch / "grey/train.txt").string(), 10),
                                                      (scratch / "grey").string(), 10, config);
        grey.description = "synthetic 64x64 grey PNG scenes";
        data_info["grey64_mean_file_bytes"] = static_cast<double>(bytes) / grey_count;
      }
      scenarios.push_back(grey);
    }
    {
      std::uint64_t bytes = make_jpegs((scratch / "jpeg").string(), jpeg_count);
      Scenario photo{"jpeg448", "synthetic 500x375 JPEGs (quality 90) -> 448x448", nullptr};
      photo.dataset = std::make_shared<ImageDataset>(read_image_list((scratch / "jpeg/train.txt").string(), 20),
                                                     (scratch / "jpeg").string(), 20, train_transform(448));
      data_info["jpeg448_mean_file_bytes"] = static_cast<double>(bytes) / jpeg_count;
      scenarios.push_back(photo);
    }

    json results = json::array();
    json stages;
    for (const Scenario& scenario : scenarios) {
      std::printf("%s: %s, %zu images\n", scenario.name.c_str(), scenario.description.c_str(),
                  scenario.dataset->size());
      stages[scenario.name] =
          stage_profile(*scenario.dataset, train_transform(scenario.dataset->image_size()), 300);
      for (int workers : {1, 2})
        for (int batch : {16, 32}) results.push_back(measure(scenario, workers, batch, min_seconds, trials, quiet_wait));
    }
    json ops = op_profile(448);

    json report;
    report["benchmark"] = "loader";
    report["what"] =
        "images/s through read + decode + resize + training augmentation (flip, Cutout p=0.5, RandAugment n=2 m=9) "
        "+ ImageNet-normalised float CHW, batches assembled by the DataLoader; the consumer only takes batches. "
        "images_per_second is the best of several trials; other_processes_cores is how many cores other "
        "processes kept busy during that trial (the machine is shared)";
    report["scenarios"] = {{"grey64", scenarios[0].description}, {"jpeg448", scenarios[1].description}};
    report["data"] = data_info;
    report["results"] = results;
    report["stages_ms_per_image_one_thread"] = stages;
    report["randaugment_op_ms_at_448"] = ops;
    report["machine"] = {{"hardware_threads", std::thread::hardware_concurrency()},
                         {"cpu", first_line_with("/proc/cpuinfo", "model name")},
                         {"opencv", CV_VERSION},
                         {"libjpeg_api", JPEG_LIB_VERSION},
                         {"load_average_before", load_before},
                         {"load_average_after", load_average()}};
    make_directories(std::filesystem::path(out_path).parent_path().string());
    write_file_atomic(out_path, report.dump(2) + "\n");
    std::printf("load average after: %s\nwrote %s\n", load_average().c_str(), out_path.c_str());
    std::filesystem::remove_all(scratch);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
