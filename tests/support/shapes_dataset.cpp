#include "shapes_dataset.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <filesystem>
#include <random>
#include <vector>

#include "test_support.h"

namespace cprfl::testing {

void write_shapes_dataset(const std::string& dir, int train_images, int test_images, std::uint32_t seed) {
  std::filesystem::create_directories(dir + "/img");
  // OpenCV colours are BGR.
  const cv::Scalar colours[kShapesClasses] = {{0, 0, 255}, {0, 255, 0}, {255, 0, 0}, {0, 255, 255}, {255, 0, 255}};
  std::mt19937 rng(seed);
  auto uniform = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::string train, test;
  for (int i = 0; i < train_images + test_images; ++i) {
    int grey = uniform(20, 60);
    cv::Mat image(32, 32, CV_8UC3, cv::Scalar(grey, grey, grey));
    std::vector<int> classes(kShapesClasses), quadrants{0, 1, 2, 3};
    for (int c = 0; c < kShapesClasses; ++c) classes[c] = c;
    std::shuffle(classes.begin(), classes.end(), rng);
    std::shuffle(quadrants.begin(), quadrants.end(), rng);
    const int count = uniform(1, 3);
    classes.resize(count);
    std::sort(classes.begin(), classes.end());
    std::string line = "img/" + std::to_string(i) + ".png";
    for (int k = 0; k < count; ++k) {
      const int c = classes[k];
      const int size = uniform(6, 12);
      const int x0 = (quadrants[k] % 2) * 16 + uniform(1, 15 - size);
      const int y0 = (quadrants[k] / 2) * 16 + uniform(1, 15 - size);
      switch (uniform(0, 2)) {
        case 0:
          cv::circle(image, {x0 + size / 2, y0 + size / 2}, size / 2, colours[c], cv::FILLED);
          break;
        case 1:
          cv::rectangle(image, cv::Rect(x0, y0, size, size), colours[c], cv::FILLED);
          break;
        default: {
          std::vector<cv::Point> triangle{{x0, y0 + size}, {x0 + size, y0 + size}, {x0 + size / 2, y0}};
          cv::fillConvexPoly(image, triangle, colours[c]);
        }
      }
      line += " " + std::to_string(c);
    }
    cv::imwrite(dir + "/img/" + std::to_string(i) + ".png", image);
    (i < train_images ? train : test) += line + "\n";
  }
  write_text(dir + "/train.txt", train);
  write_text(dir + "/test.txt", test);
  write_text(dir + "/labels.txt", "red\ngreen\nblue\nyellow\nmagenta\n");
}

Config shapes_config(const std::string& data_dir, const std::string& out_dir, const std::string& model_type) {
  Config config;
  for (const char* assignment :
       {"data.image_size=32", "data.workers=2", "data.randaugment=false", "data.cutout_prob=0", "data.hflip=false",
        "model.backbone=small", "model.small_widths=16,32,32", "model.d=32", "model.heads=4", "model.head_dim=8",
        "model.ffn=64", "model.dropout=0", "prompts.source=randn", "prompts.randn_dim=12", "optim.batch_size=16",
        "optim.epochs=6", "optim.lr=1e-2", "optim.backbone_lr_mult=1", "optim.ema_decay=0",
        // float32 on every CPU: the tests that check exactness (resume, accumulation) mean it
        "optim.amp_cpu=false"}) {
    config.set_assignment(assignment, "shapes_config");
  }
  config.set("model.type", model_type, "shapes_config");
  config.set("data.root", data_dir, "shapes_config");
  config.set("data.train_list", data_dir + "/train.txt", "shapes_config");
  config.set("data.test_list", data_dir + "/test.txt", "shapes_config");
  config.set("data.labels", data_dir + "/labels.txt", "shapes_config");
  config.set("train.out_dir", out_dir, "shapes_config");
  return config;
}

}  // namespace cprfl::testing
