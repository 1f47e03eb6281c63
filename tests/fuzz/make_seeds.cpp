// Writes the binary seed files of the fuzz corpora (tests/fuzz/corpus/<target>/): tiny .npy
// arrays, PNG/JPEG images, .cprfl model files and torch.save files, made with the project's
// own writers so that they are real examples (CLIP checkpoints: tests/support/tiny_clip). The text seeds (lists, labels, configs,
// prompts) are plain files committed as they are. Usage: cprfl_fuzz_seeds <corpus folder>.
#include <caffe2/serialize/inline_container.h>

#include <filesystem>
#include <iostream>

#include <opencv2/imgcodecs.hpp>

#include "cprfl/config/options.h"
#include "cprfl/config/prompt_setup.h"
#include "cprfl/io/atomic_file.h"
#include "cprfl/config/model_file.h"
#include "cprfl/io/npy.h"
#include "cprfl/model/build.h"
#include "tiny_clip.h"
#include "torch_file_writer.h"

using namespace cprfl;

namespace {

void write_image(const std::string& path, const cv::Mat& image, const std::vector<int>& params = {}) {
  std::vector<std::uint8_t> bytes;
  if (!cv::imencode(std::filesystem::path(path).extension().string(), image, bytes, params))
    throw std::runtime_error("cannot encode " + path);
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

void write_model(const std::string& path, const std::string& type) {
  ModelInfo info;
  info.config.set("model.type", type, "seed");
  info.config.set("model.small_widths", "4", "seed");
  info.config.set("model.small_blocks", "1", "seed");
  info.config.set("model.d", "8", "seed");
  info.config.set("model.heads", "1", "seed");
  info.config.set("model.head_dim", "4", "seed");
  info.config.set("model.ffn", "8", "seed");
  info.class_names = {"cat", "dog", "traffic light"};
  info.class_counts = {5, 3, 1};
  info.num_train_images = 7;
  if (type == "cprfl") info.prompt_embeddings = torch::randn({3, 6});
  auto model = build_model(info.config, 3, info.prompt_embeddings);
  save_tensor_file(path, make_model_file(info, *model, type == "cprfl" ? model.get() : nullptr));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: cprfl_fuzz_seeds <corpus folder>\n";
    return 2;
  }
  const std::string root = argv[1];
  for (const char* folder :
       {"npy", "image", "model_file", "torch_file", "torch_pickle", "clip_checkpoint", "import_official"})
    make_directories(root + "/" + folder);
  torch::manual_seed(0);

  write_npy(root + "/npy/float32_2x3.npy", torch::randn({2, 3}));
  write_npy(root + "/npy/int64_4.npy", torch::arange(4, torch::kLong));
  write_npy(root + "/npy/bool_scalar.npy", torch::tensor(true));
  write_npy(root + "/npy/half_1x2x2.npy", torch::randn({1, 2, 2}).to(torch::kHalf));

  cv::Mat colour(3, 4, CV_8UC3);
  cv::randu(colour, 0, 255);
  write_image(root + "/image/rgb_4x3.png", colour);
  cv::Mat grey(2, 2, CV_8UC1, cv::Scalar(77));
  write_image(root + "/image/grey_2x2.png", grey);
  cv::Mat deep(2, 3, CV_16UC3, cv::Scalar(1000, 20000, 65535));
  write_image(root + "/image/rgb16_3x2.png", deep);
  cv::Mat rgba(2, 2, CV_8UC4, cv::Scalar(1, 2, 3, 128));
  write_image(root + "/image/rgba_2x2.png", rgba);
  write_image(root + "/image/rgb_8x8.jpg", cv::Mat(8, 8, CV_8UC3, cv::Scalar(10, 200, 30)));
  write_image(root + "/image/grey_1x1.jpg", cv::Mat(1, 1, CV_8UC1, cv::Scalar(200)));
  write_image(root + "/image/progressive_16x9.jpg", cv::Mat(9, 16, CV_8UC3, cv::Scalar(5, 6, 7)),
              {cv::IMWRITE_JPEG_PROGRESSIVE, 1});

  write_model(root + "/model_file/cprfl_3_classes.cprfl", "cprfl");
  write_model(root + "/model_file/linear_3_classes.cprfl", "linear");

  const std::string plain = root + "/torch_file/state_dict.pth";
  cprfl::testing::write_torch_state_dict(plain, {{"conv1.weight", torch::randn({2, 1, 1, 1})},
                                                 {"bn1.bias", torch::zeros({2}).to(torch::kHalf)},
                                                 {"bn1.num_batches_tracked", torch::tensor(3, torch::kLong)}});
  cprfl::testing::TorchSaveOptions wrapped;
  wrapped.wrap_key = "state_dict";
  wrapped.numpy_scalars = {{"score", 0.5}};
  cprfl::testing::write_torch_state_dict(root + "/torch_file/checkpoint.pth",
                                         {{"fc.weight", torch::randn({2, 3})}, {"fc.bias", torch::randn({2})}}, wrapped);
  for (const char* name : {"state_dict", "checkpoint"}) {
    caffe2::serialize::PyTorchStreamReader reader(root + "/torch_file/" + name + ".pth");
    auto [data, size] = reader.getRecord("data.pkl");
    write_file_atomic(root + "/torch_pickle/" + name + ".pkl", std::string(static_cast<const char*>(data.get()), size));
  }
  // CLIP checkpoints: a text-only TorchScript archive (float16 weights, as OpenAI's) and a
  // state dict; both as small as the shape checks allow (width 64 = one head of 64).
  testing::TinyClipShape tiny;
  tiny.text_layers = 1;
  tiny.context_length = 8;
  tiny.vocab_size = 16;
  tiny.visual = clip::ClipVisualKind::None;
  const NamedTensors text = testing::tiny_clip_tensors(tiny);
  testing::save_clip_torchscript(root + "/clip_checkpoint/text_only_torchscript.pt", text);
  testing::save_clip_state_dict(root + "/clip_checkpoint/text_only_state_dict.pt", text);

  // An authors' checkpoint as far as its architecture is read: a ResNet-18's backbone key
  // names (only names count there, so 1-element tensors), a d 4 head with one VSI layer of
  // 2 heads x 2, PI 32 -> 6 -> 4, and the tiny text encoder under text_encoder.
  std::vector<std::pair<std::string, torch::Tensor>> official;
  for (const char* name : {"Backbone.0.weight", "Backbone.4.0.conv1.weight", "Backbone.6.0.conv1.weight",
                           "Backbone.6.1.conv1.weight", "Backbone.7.1.bn2.running_var"})
    official.emplace_back(name, torch::zeros({1}));
  official.emplace_back("fc.0.weight", torch::randn({4, 8}));
  official.emplace_back("fc.0.bias", torch::randn({4}));
  official.emplace_back("label_emb.0.weight", torch::randn({6, 32}));
  official.emplace_back("label_emb.0.bias", torch::randn({6}));
  official.emplace_back("label_emb.3.weight", torch::randn({4, 6}));
  official.emplace_back("label_emb.3.bias", torch::randn({4}));
  official.emplace_back("attention.layers.0.0.norm.weight", torch::ones({4}));
  official.emplace_back("attention.layers.0.0.fn.to_qkv.weight", torch::randn({12, 4}));
  official.emplace_back("attention.layers.0.0.fn.to_out.0.weight", torch::randn({4, 4}));
  official.emplace_back("attention.layers.0.1.fn.net.0.weight", torch::randn({8, 4}));
  official.emplace_back("attention.layers.0.1.fn.net.3.weight", torch::randn({4, 8}));
  for (const auto& [name, tensor] : text)  // the authors' model keeps CLIP's text side only
    if (name != "logit_scale") official.emplace_back("text_encoder." + name, tensor.to(torch::kHalf));
  cprfl::testing::TorchSaveOptions authors;
  authors.wrap_key = "state_dict";
  cprfl::testing::write_torch_state_dict(root + "/import_official/resnet18_names_tiny_head.pth", official, authors);

  std::cout << "seeds written under " << root << "\n";
  return 0;
}
