#include "tiny_dataset.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <filesystem>
#include <random>

#include "test_support.h"

namespace cprfl::testing {

void write_tiny_dataset(const std::string& dir, int train_images, int test_images) {
  std::filesystem::create_directories(dir + "/img");
  const cv::Scalar colours[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 0}};
  std::mt19937 rng(123);
  std::string train, test;
  for (int i = 0; i < train_images + test_images; ++i) {
    cv::Mat image(32, 32, CV_8UC3, cv::Scalar(30, 30, 30));
    std::string line = "img/" + std::to_string(i) + ".png";
    int drawn = 0;
    for (int c = 0; c < 4; ++c) {
      // Class 3 is rare, like a tail class.
      bool present = (c == 3) ? (rng() % 6 == 0) : (rng() % 2 == 0);
      if (!present && !(c == 2 && drawn == 0)) continue;
      cv::rectangle(image, cv::Rect((c % 2) * 16 + 2, (c / 2) * 16 + 2, 12, 12), colours[c], cv::FILLED);
      line += " " + std::to_string(c);
      ++drawn;
    }
    cv::imwrite(dir + "/" + "img/" + std::to_string(i) + ".png", image);
    (i < train_images ? train : test) += line + "\n";
  }
  write_text(dir + "/train.txt", train);
  write_text(dir + "/test.txt", test);
  write_text(dir + "/labels.txt", "red\ngreen\nblue\nyellow\n");
}

Config tiny_config(const std::string& data_dir, const std::string& out_dir) {
  Config config;
  for (const char* assignment :
       {"data.image_size=32", "data.workers=2", "data.randaugment=true", "model.small_widths=8,16,16", "model.d=16",
        "model.heads=2", "model.head_dim=8", "model.ffn=16", "prompts.source=randn", "prompts.randn_dim=12",
        "optim.batch_size=8", "optim.epochs=3", "optim.lr=3e-3", "optim.ema_decay=0.9",
        "optim.amp_cpu=false"}) {  // float32 on every CPU (exact-resume tests)
    config.set_assignment(assignment, "tiny_config");
  }
  config.set("data.root", data_dir, "tiny_config");
  config.set("data.train_list", data_dir + "/train.txt", "tiny_config");
  config.set("data.test_list", data_dir + "/test.txt", "tiny_config");
  config.set("data.labels", data_dir + "/labels.txt", "tiny_config");
  config.set("train.out_dir", out_dir, "tiny_config");
  return config;
}

}  // namespace cprfl::testing
