// Devices by name everywhere, and the CUDA path: the same model scores the same on a GPU as on
// the CPU, trains there, and what it writes evaluates on the CPU and resumes there. The GPU
// tests skip, saying so, where this LibTorch build sees no CUDA GPU (a CPU-only LibTorch, or a
// CUDA one on a machine without a GPU); scripts/gpu_check.sh runs them on one.
#include <gtest/gtest.h>

#include <string>

#include "cprfl/common/autocast.h"
#include "cprfl/common/device.h"
#include "cprfl/common/error.h"
#include "cprfl/config/model_file.h"
#include "cprfl/config/options.h"
#include "cprfl/data/loader.h"
#include "cprfl/eval/predictor.h"
#include "cprfl/io/tensor_file.h"
#include "cprfl/train/trainer.h"
#include "test_support.h"
#include "tiny_dataset.h"

using namespace cprfl;
using cprfl::testing::TempDir;

namespace {

#define SKIP_WITHOUT_GPU() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible to this LibTorch build"

// Largest difference relative to the largest magnitude: the error of a float32 result computed
// in another summation order (cuDNN/cuBLAS against oneDNN/OpenBLAS) is a few ulp of the
// values summed, so it scales with the largest logit, not with each one.
double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  auto x = a.to(torch::kCPU, torch::kDouble), y = b.to(torch::kCPU, torch::kDouble);
  return (x - y).abs().max().item<double>() / std::max(1e-12, x.abs().max().item<double>());
}

Trainer make_trainer(const Config& config) {
  return Trainer(config, load_training_data(data_options_of(config), static_cast<uint64_t>(config.get_int("train.seed"))));
}

// A small trained-from-scratch model file on the tiny data set, trained on `device`.
std::string train_model_file(const TempDir& dir, const std::string& device, int steps) {
  cprfl::testing::write_tiny_dataset(dir.file("data"));
  auto config = cprfl::testing::tiny_config(dir.file("data"), dir.file("run-" + device));
  config.set("train.device", device, "test");
  Trainer trainer = make_trainer(config);
  trainer.model().train();
  trainer.train_loader().start_epoch(0);
  for (int i = 0; i < steps; ++i) {
    auto batch = trainer.train_loader().next();
    if (!batch) break;
    trainer.step(batch->images, batch->targets);
  }
  std::string path = dir.file(device + ".cprfl");
  save_tensor_file(path, trainer.model_file());
  return path;
}

torch::Tensor scores_on(const std::string& model_path, const std::string& device, const std::string& images) {
  PredictorOptions options;
  options.device = device;
  options.precision = "fp32";  // auto would be bf16 on a CPU with bf16 hardware
  options.workers = 0;
  options.progress = false;
  Predictor predictor(model_path, options);
  auto predictions = predictor.predict(expand_image_inputs({images}), LabelRule{});
  std::vector<torch::Tensor> rows;
  for (const auto& p : predictions) rows.push_back(torch::tensor(p.logits));
  return torch::stack(rows);
}

}  // namespace

TEST(DeviceNames, AcceptsAutoCpuCudaAndAnIndex) {
  for (const char* name : {"auto", "cpu", "cuda", "cuda:0", "cuda:7", "cuda:15"})
    EXPECT_EQ(device_name_problem(name), "") << name;
}

TEST(DeviceNames, RefusesAnythingElseSayingWhatIsAllowed) {
  for (const char* name : {"", "gpu", "CUDA", "cuda:", "cuda:x", "cuda:-1", "cuda:0:1", "cpu:0", "tpu", "cuda:12345"}) {
    auto problem = device_name_problem(name);
    EXPECT_NE(problem.find("auto, cpu, cuda or cuda:N"), std::string::npos) << name << ": " << problem;
  }
  EXPECT_THROW(pick_device("gpu"), Error);
}

TEST(DeviceNames, AutoIsTheCpuWithoutAGpuAndAMissingGpuIsNamed) {
  if (torch::cuda::is_available()) {
    EXPECT_TRUE(pick_device("auto").is_cuda());
    const auto count = torch::cuda::device_count();
    try {
      pick_device("cuda:" + std::to_string(count));
      FAIL() << "a GPU index past the last was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cuda:" + std::to_string(count)), std::string::npos) << e.what();
    }
    return;
  }
  EXPECT_TRUE(pick_device("auto").is_cpu());
  for (const char* name : {"cuda", "cuda:1"}) {
    try {
      pick_device(name);
      FAIL() << name << " was accepted without a GPU";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("device ") + name), std::string::npos) << e.what();
    }
  }
}

TEST(DeviceNames, ConfigErrorNamesTheKey) {
  TempDir dir;
  auto config = cprfl::testing::tiny_config(dir.file("data"), dir.file("run"));
  config.set("train.device", "gpu:0", "test");
  try {
    run_options_of(config);
    FAIL() << "train.device gpu:0 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.device"), std::string::npos) << e.what();
  }
  config.set("train.device", "cuda:1", "test");
  EXPECT_EQ(run_options_of(config).train.device, "cuda:1");
}

// Pinned batches hold the same pixels as pageable ones (only where they are, not what, differs).
TEST(Cuda, PinnedLoaderBatchesEqualPageableOnes) {
  SKIP_WITHOUT_GPU();
  TempDir dir;
  cprfl::testing::write_tiny_dataset(dir.file("data"));
  auto config = cprfl::testing::tiny_config(dir.file("data"), dir.file("run"));
  auto data = data_options_of(config);
  auto list = read_image_list(data.train_list, 4);
  auto dataset = std::make_shared<const ImageDataset>(list, data.root, 4, data.eval_transform);
  LoaderOptions options;
  options.batch_size = 5;
  options.shuffle = false;
  options.workers = 1;
  DataLoader pageable(dataset, options);
  options.pin_memory = true;
  DataLoader pinned(dataset, options);
  pageable.start_epoch(0);
  pinned.start_epoch(0);
  while (auto a = pageable.next()) {
    auto b = pinned.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_TRUE(b->images.is_pinned());
    EXPECT_TRUE(torch::equal(a->images, b->images));
    EXPECT_TRUE(torch::equal(a->targets, b->targets));
    // The asynchronous copy lands what was sent.
    EXPECT_TRUE(torch::equal(to_device(b->images, torch::kCUDA).cpu(), a->images));
  }
}

// Float32 on the GPU (TF32 off, as eval and predict set it) against float32 on the CPU, same
// model file, same images, through the folded inference path: within 1e-3 of the largest logit.
TEST(Cuda, ScoresMatchTheCpuInFloat32) {
  SKIP_WITHOUT_GPU();
  TempDir dir;
  auto model = train_model_file(dir, "cpu", 3);
  auto cpu = scores_on(model, "cpu", dir.file("data/img"));
  auto cuda = scores_on(model, "cuda", dir.file("data/img"));
  ASSERT_EQ(cpu.sizes(), cuda.sizes());
  EXPECT_LT(relative_difference(cpu, cuda), 1e-3);
}

// bf16 autocast on CUDA against float32 on the CPU: bf16 keeps 8 significant bits (relative
// rounding 2^-9 ≈ 2e-3 per operation), and a few layers of it stay within 5e-2 of the largest logit.
TEST(Cuda, Bf16AutocastScoresStayNearFloat32) {
  SKIP_WITHOUT_GPU();
  TempDir dir;
  auto path = train_model_file(dir, "cpu", 3);
  auto cpu = load_model_file(path, true);
  auto gpu = load_model_file(path, true);
  gpu.model->to(torch::kCUDA);
  torch::manual_seed(0);
  const int64_t size = cpu.info.config.get_int("data.image_size");
  auto images = torch::rand({4, 3, size, size});
  torch::NoGradGuard no_grad;
  auto reference = cpu.model->forward(images);
  torch::Tensor bf16;
  {
    BFloat16Autocast autocast(torch::kCUDA);
    bf16 = gpu.model->forward(images.to(torch::kCUDA)).to(torch::kCPU, torch::kFloat);
  }
  EXPECT_LT(relative_difference(reference, bf16), 5e-2);
}

// Trained on the GPU: the model file holds CPU float32 tensors, evaluates on the CPU like on
// the GPU, and its checkpoint (optimizer state included) resumes on the CPU.
TEST(Cuda, TrainedOnTheGpuEvaluatesAndResumesOnTheCpu) {
  SKIP_WITHOUT_GPU();
  TempDir dir;
  auto path = train_model_file(dir, "cuda", 3);
  auto file = load_tensor_file(path);
  for (const auto& [name, tensor] : file.tensors) {
    EXPECT_TRUE(tensor.device().is_cpu()) << name;
    if (tensor.is_floating_point()) EXPECT_EQ(tensor.scalar_type(), torch::kFloat) << name;
  }
  auto cpu = scores_on(path, "cpu", dir.file("data/img"));
  auto cuda = scores_on(path, "cuda", dir.file("data/img"));
  EXPECT_LT(relative_difference(cpu, cuda), 1e-3);

  auto config = cprfl::testing::tiny_config(dir.file("data"), dir.file("resume"));
  config.set("train.device", "cuda", "test");
  Trainer on_gpu = make_trainer(config);
  on_gpu.run_epoch(false);
  std::string checkpoint = dir.file("last.cprfl");
  save_tensor_file(checkpoint, on_gpu.checkpoint());
  config.set("train.device", "cpu", "test");
  Trainer on_cpu = make_trainer(config);
  on_cpu.restore(checkpoint);
  EXPECT_EQ(on_cpu.state().step, on_gpu.state().step);
  on_cpu.train_loader().start_epoch(1);
  auto batch = on_cpu.train_loader().next();
  ASSERT_TRUE(batch.has_value());
  EXPECT_TRUE(std::isfinite(on_cpu.step(batch->images, batch->targets).item<double>()));
}
