#include <gtest/gtest.h>

#include "cprfl/common/error.h"
#include "cprfl/data/class_stats.h"
#include "cprfl/data/list_file.h"
#include "test_support.h"

using cprfl::testing::error_of;

using namespace cprfl;
using cprfl::testing::TempDir;
using cprfl::testing::write_text;

TEST(ListFile, ParsesIdsTrailingSpacesCrlfAndPathOnlyLines) {
  TempDir dir;
  write_text(dir.file("l.txt"), "a/1.jpg 0 2 \r\n\nb/2.jpg\t1\r\nc/3.jpg\n");
  auto list = read_image_list(dir.file("l.txt"), 3);
  ASSERT_EQ(list.records.size(), 3u);
  EXPECT_EQ(list.records[0].path, "a/1.jpg");
  EXPECT_EQ(list.records[0].labels, (std::vector<int>{0, 2}));
  EXPECT_EQ(list.records[1].path, "b/2.jpg");
  EXPECT_EQ(list.records[1].labels, (std::vector<int>{1}));
  EXPECT_EQ(list.records[1].line, 3u);
  EXPECT_TRUE(list.records[2].labels.empty());
}

TEST(ListFile, TabSeparatesPathsWithSpaces) {
  TempDir dir;
  write_text(dir.file("l.txt"), "my photos/a b.jpg\t1 0\n");
  auto list = read_image_list(dir.file("l.txt"), 2);
  EXPECT_EQ(list.records[0].path, "my photos/a b.jpg");
  EXPECT_EQ(list.records[0].labels, (std::vector<int>{1, 0}));
}

TEST(ListFile, BadIdsNameFileAndLine) {
  TempDir dir;
  write_text(dir.file("l.txt"), "a.jpg 0\nb.jpg 7\n");
  EXPECT_NE(error_of([&] { read_image_list(dir.file("l.txt"), 3); }).find("l.txt:2: label id 7 is out of range [0, 3)"),
            std::string::npos);
  write_text(dir.file("l.txt"), "a.jpg x\n");
  EXPECT_NE(error_of([&] { read_image_list(dir.file("l.txt"), 3); }).find("l.txt:1: label 'x' is not an integer"),
            std::string::npos);
  write_text(dir.file("l.txt"), "a.jpg -1\n");
  EXPECT_NE(error_of([&] { read_image_list(dir.file("l.txt"), 3); }).find("label id -1 is out of range"),
            std::string::npos);
  write_text(dir.file("l.txt"), "a.jpg 99999999999999999999999\n");
  EXPECT_NE(error_of([&] { read_image_list(dir.file("l.txt"), 3); }).find("out of range"), std::string::npos);
  write_text(dir.file("l.txt"), "a.jpg 1 1\n");
  EXPECT_NE(error_of([&] { read_image_list(dir.file("l.txt"), 3); }).find("l.txt:1: label id 1 appears twice"),
            std::string::npos);
}

TEST(ListFile, EmptyAndMissingListsAreErrors) {
  TempDir dir;
  write_text(dir.file("empty.txt"), "\n  \n");
  EXPECT_NE(error_of([&] { read_image_list(dir.file("empty.txt"), 3); }).find("empty.txt: the list is empty"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_image_list(dir.file("missing.txt"), 3); }).find("missing.txt: cannot open file"),
            std::string::npos);
}

TEST(LabelsFile, PlainAndNumberedForms) {
  TempDir dir;
  write_text(dir.file("a.txt"), "traffic light\ncat\r\n");
  EXPECT_EQ(read_labels(dir.file("a.txt")), (std::vector<std::string>{"traffic light", "cat"}));
  write_text(dir.file("b.txt"), "cat 1\ntraffic light 0\n");
  EXPECT_EQ(read_labels(dir.file("b.txt")), (std::vector<std::string>{"traffic light", "cat"}));
  write_text(dir.file("c.txt"), "cat 2\ndog 0\n");
  EXPECT_NE(error_of([&] { read_labels(dir.file("c.txt")); }).find("id 1 is missing"), std::string::npos);
  write_text(dir.file("d.txt"), "cat\ncat\n");
  EXPECT_EQ(read_labels(dir.file("d.txt")).size(), 2u);  // a warning, not an error
  write_text(dir.file("e.txt"), "");
  EXPECT_NE(error_of([&] { read_labels(dir.file("e.txt")); }).find("empty"), std::string::npos);
}

// The published splits: VOC-LT 6/6/8 classes with n_c 4..775, COCO-LT 22/33/25 with 6..1128.
TEST(ClassStats, VocLtAndCocoLtGroups) {
  struct Case { std::string name; std::size_t head, medium, tail; std::int64_t lo, hi; std::int64_t images; };
  for (const Case& c : {Case{"voc_lt", 6, 6, 8, 4, 775, 1142}, Case{"coco_lt", 22, 33, 25, 6, 1128, 1909}}) {
    std::string folder = cprfl::testing::source_dir() + "/data/benchmarks/" + c.name;
    auto names = read_labels(folder + "/labels.txt");
    auto stats = compute_class_stats(read_image_list(folder + "/train.txt", static_cast<int>(names.size())), names);
    EXPECT_EQ(stats.classes_in(Group::kHead).size(), c.head) << c.name;
    EXPECT_EQ(stats.classes_in(Group::kMedium).size(), c.medium) << c.name;
    EXPECT_EQ(stats.classes_in(Group::kTail).size(), c.tail) << c.name;
    EXPECT_EQ(*std::min_element(stats.counts.begin(), stats.counts.end()), c.lo) << c.name;
    EXPECT_EQ(*std::max_element(stats.counts.begin(), stats.counts.end()), c.hi) << c.name;
    EXPECT_EQ(stats.num_images, c.images) << c.name;
  }
}

TEST(ClassStats, ThresholdsAreConfigurable) {
  std::vector<std::int64_t> counts{5, 10, 50};
  auto groups = groups_from_counts(counts, {50, 10});
  EXPECT_EQ(groups, (std::vector<Group>{Group::kTail, Group::kMedium, Group::kHead}));
  EXPECT_THROW(groups_from_counts(counts, {10, 50}), Error);
}

TEST(StatsCommand, PrintsTableAndWritesJson) {
  TempDir dir;
  std::string folder = cprfl::testing::source_dir() + "/data/benchmarks/voc_lt";
  auto result = cprfl::testing::run_cprfl("stats --list " + folder + "/train.txt --labels " + folder +
                                          "/labels.txt --json " + dir.file("s.json"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("head 6 / medium 6 / tail 8"), std::string::npos) << result.output;
  auto json = nlohmann::json::parse(cprfl::testing::read_text(dir.file("s.json")));
  EXPECT_EQ(json["group_sizes"]["tail"], 8);
  EXPECT_EQ(json["min_count"], 4);
  auto bad = cprfl::testing::run_cprfl("stats --list " + dir.file("nope.txt") + " --labels " + folder + "/labels.txt");
  EXPECT_EQ(bad.exit_code, 1);  // an error while running, not a crash or a parse error
  EXPECT_NE(bad.output.find("nope.txt: cannot open file"), std::string::npos) << bad.output;
}
