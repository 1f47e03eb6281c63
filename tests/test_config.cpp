#include <gtest/gtest.h>

#include <filesystem>

#include "cprfl/common/error.h"
#include "cprfl/config/config.h"
#include "test_support.h"

using cprfl::testing::error_of;

using namespace cprfl;

TEST(Config, DefaultsAndYamlOverlay) {
  Config config;
  EXPECT_EQ(config.get_string("loss.name"), "asl");
  EXPECT_DOUBLE_EQ(config.get_float("optim.ema_decay"), 0.998);
  config.merge_yaml_text("optim:\n  lr: 5e-5\n  epochs: 30\nmodel:\n  residual: yes\n", "t.yaml");
  EXPECT_DOUBLE_EQ(config.get_float("optim.lr"), 5e-5);
  EXPECT_EQ(config.get_int("optim.epochs"), 30);
  EXPECT_TRUE(config.get_bool("model.residual"));
  config.set_assignment("optim.lr=0.01", "--set");
  EXPECT_DOUBLE_EQ(config.get_float("optim.lr"), 0.01);
}

TEST(Config, UnknownKeySuggestsNearest) {
  Config config;
  auto message = error_of([&] { config.merge_yaml_text("optim:\n  lrr: 1\n", "c.yaml"); });
  EXPECT_NE(message.find("c.yaml:2: unknown key 'optim.lrr' (did you mean 'optim.lr'?)"), std::string::npos) << message;
  message = error_of([&] { config.set_assignment("epochs=3", "--set"); });
  EXPECT_NE(message.find("did you mean 'optim.epochs'"), std::string::npos) << message;
}

TEST(Config, WrongTypesAndChoicesNameTheKey) {
  Config config;
  auto message = error_of([&] { config.merge_yaml_text("optim:\n  epochs: many\n", "c.yaml"); });
  EXPECT_NE(message.find("c.yaml:2: optim.epochs = 'many': expected an integer"), std::string::npos) << message;
  message = error_of([&] { config.set("loss.name", "hinge", "--set"); });
  EXPECT_NE(message.find("must be one of: asl, bce"), std::string::npos) << message;
  message = error_of([&] { config.merge_yaml_text("optim: [1, 2]\n", "c.yaml"); });
  EXPECT_NE(message.find("expected a single value"), std::string::npos) << message;
  message = error_of([&] { config.merge_yaml_text("optim:\n  lr: [1\n", "c.yaml"); });
  EXPECT_NE(message.find("invalid YAML"), std::string::npos) << message;
}

TEST(Config, JsonRoundTrip) {
  Config config;
  config.set("optim.lr", "3e-4", "t");
  config.set("data.root", "my \"data\" dir", "t");
  Config back = Config::from_json(config.to_json(), "json");
  EXPECT_EQ(back.to_json(), config.to_json());
  Config from_yaml;
  from_yaml.merge_yaml_text(config.to_yaml(), "yaml");
  EXPECT_EQ(from_yaml.to_json(), config.to_json());
}

// Every shipped config parses against the schema (a renamed key would break a user's run).
TEST(Config, ShippedConfigsParse) {
  int seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(cprfl::testing::source_dir() + "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    Config config;
    EXPECT_NO_THROW(config.merge_yaml_file(entry.path().string())) << entry.path();
    ++seen;
  }
  EXPECT_GE(seen, 6);
  Config voc;
  voc.merge_yaml_file(cprfl::testing::source_dir() + "/configs/voc_lt.yaml");
  EXPECT_EQ(voc.get_string("model.backbone"), "resnet101");
  EXPECT_EQ(voc.get_int("data.image_size"), 448);
  EXPECT_EQ(voc.get_int("optim.epochs"), 80);
  Config paper;
  paper.merge_yaml_file(cprfl::testing::source_dir() + "/configs/voc_lt_paper.yaml");
  EXPECT_EQ(paper.get_string("optim.name"), "adam");
  EXPECT_DOUBLE_EQ(paper.get_float("optim.lr"), 5e-5);
}

// Floats are stored as the shortest text that reads back as the same double.
TEST(Config, FloatsPrintShortAndReadBackExactly) {
  cprfl::Config config;
  config.set("model.dropout", "0.1", "test");
  config.set("optim.lr", "1e-5", "test");
  config.set("optim.pct_start", "0.30000000000000004", "test");  // 0.1 + 0.2: needs all 17 digits
  const std::string yaml = config.to_yaml();
  EXPECT_NE(yaml.find("dropout: 0.1\n"), std::string::npos) << yaml;
  EXPECT_EQ(yaml.find("0.10000000000000001"), std::string::npos) << yaml;
  EXPECT_EQ(config.get_float("model.dropout"), 0.1);
  EXPECT_EQ(config.get_float("optim.lr"), 1e-5);
  EXPECT_EQ(config.get_float("optim.pct_start"), 0.1 + 0.2);
  cprfl::Config again;
  again.merge_yaml_text(yaml, "round trip");
  EXPECT_EQ(again.get_float("optim.pct_start"), 0.1 + 0.2);
  EXPECT_EQ(again.get_float("optim.lr"), 1e-5);
}
