#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cprfl/common/error.h"
#include "cprfl/data/pil_resize.h"

using namespace cprfl;

namespace {

// Golden outputs of Pillow's Image.resize, made by tests/fixtures/pil_resize/make_fixtures.py.
const std::string kFixtureDir = std::string(CPRFL_SOURCE_DIR) + "/tests/fixtures/pil_resize/";

struct ResizeCase {
  std::string input;
  int width = 0;
  int height = 0;
  std::string filter;
  std::string expected;
};

std::vector<ResizeCase> read_cases() {
  std::ifstream file(kFixtureDir + "cases.txt");
  EXPECT_TRUE(file.good()) << "cannot read " << kFixtureDir << "cases.txt";
  std::vector<ResizeCase> cases;
  std::string line;
  int number = 0;
  while (std::getline(file, line)) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    ResizeCase c;
    fields >> c.input >> c.width >> c.height >> c.filter >> c.expected;
    EXPECT_FALSE(fields.fail()) << "cases.txt:" << number << ": malformed line: " << line;
    if (!fields.fail()) cases.push_back(c);
  }
  return cases;
}

// PNG → RGB (3 channels) or grey (1 channel), as stored.
cv::Mat load_png(const std::string& name) {
  cv::Mat image = cv::imread(kFixtureDir + name, cv::IMREAD_UNCHANGED);
  EXPECT_FALSE(image.empty()) << "cannot read " << kFixtureDir << name;
  if (image.channels() == 3) cv::cvtColor(image, image, cv::COLOR_BGR2RGB);
  return image;
}

// Empty when the images are equal; otherwise where they first differ and how many values differ.
std::string difference(const cv::Mat& actual, const cv::Mat& expected) {
  if (actual.size() != expected.size() || actual.type() != expected.type()) {
    std::ostringstream out;
    out << "got " << actual.cols << "x" << actual.rows << " type " << cv::typeToString(actual.type()) << ", expected "
        << expected.cols << "x" << expected.rows << " type " << cv::typeToString(expected.type());
    return out.str();
  }
  const int channels = expected.channels();
  long differing = 0;
  std::ostringstream first;
  for (int y = 0; y < expected.rows; ++y) {
    const std::uint8_t* a = actual.ptr<std::uint8_t>(y);
    const std::uint8_t* e = expected.ptr<std::uint8_t>(y);
    for (int i = 0; i < expected.cols * channels; ++i) {
      if (a[i] == e[i]) continue;
      if (differing++ == 0)
        first << "first at x=" << i / channels << " y=" << y << " channel " << i % channels << ": got " << int(a[i])
              << ", Pillow " << int(e[i]);
    }
  }
  if (differing == 0) return "";
  return first.str() + "; " + std::to_string(differing) + " of " +
         std::to_string(static_cast<long>(expected.total()) * channels) + " values differ";
}

TEST(PilResize, MatchesPillowFixtures) {
  const std::vector<ResizeCase> cases = read_cases();
  ASSERT_GE(cases.size(), 30u);
  for (const ResizeCase& c : cases) {
    SCOPED_TRACE(c.input + " -> " + std::to_string(c.width) + "x" + std::to_string(c.height) + " " + c.filter);
    ASSERT_TRUE(c.filter == "bilinear" || c.filter == "bicubic") << c.filter;
    const cv::Mat input = load_png(c.input);
    const cv::Mat expected = load_png(c.expected);
    ASSERT_FALSE(input.empty());
    ASSERT_FALSE(expected.empty());
    const PilFilter filter = c.filter == "bilinear" ? PilFilter::bilinear : PilFilter::bicubic;
    const cv::Mat actual = pil_resize(input, c.width, c.height, filter);
    EXPECT_EQ(difference(actual, expected), "");
  }
}

TEST(PilResize, UnchangedSizeIsAnIndependentCopy) {
  cv::Mat input(5, 7, CV_8UC3, cv::Scalar(10, 20, 30));
  cv::Mat out = pil_resize(input, 7, 5, PilFilter::bicubic);
  EXPECT_EQ(difference(out, input), "");
  out.setTo(cv::Scalar(0, 0, 0));
  EXPECT_EQ(input.at<cv::Vec3b>(2, 3), cv::Vec3b(10, 20, 30));
}

TEST(PilResize, ReadsARegionOfInterest) {
  // A non-continuous view (row stride larger than the width) gives the same result as its compact copy.
  const cv::Mat whole = load_png("in_97x61.png");
  ASSERT_FALSE(whole.empty());
  const cv::Mat view = whole(cv::Rect(5, 3, 60, 50));
  ASSERT_FALSE(view.isContinuous());
  for (PilFilter filter : {PilFilter::bilinear, PilFilter::bicubic})
    EXPECT_EQ(difference(pil_resize(view, 23, 71, filter), pil_resize(view.clone(), 23, 71, filter)), "");
}

TEST(PilResize, RejectsWrongTypesAndSizes) {
  const cv::Mat rgb(4, 4, CV_8UC3, cv::Scalar::all(1));
  EXPECT_THROW(pil_resize(rgb, 0, 4, PilFilter::bilinear), Error);
  EXPECT_THROW(pil_resize(rgb, 4, 0, PilFilter::bilinear), Error);
  EXPECT_THROW(pil_resize(rgb, -3, 2, PilFilter::bicubic), Error);
  EXPECT_THROW(pil_resize(cv::Mat(4, 4, CV_8UC4, cv::Scalar::all(1)), 2, 2, PilFilter::bilinear), Error);
  EXPECT_THROW(pil_resize(cv::Mat(4, 4, CV_32FC3, cv::Scalar::all(1)), 2, 2, PilFilter::bilinear), Error);
  EXPECT_THROW(pil_resize(cv::Mat(4, 4, CV_16UC1, cv::Scalar::all(1)), 2, 2, PilFilter::bicubic), Error);
  EXPECT_THROW(pil_resize(cv::Mat(), 2, 2, PilFilter::bicubic), Error);
  EXPECT_THROW(pil_resize(cv::Mat(0, 4, CV_8UC3), 2, 2, PilFilter::bicubic), Error);
  try {
    pil_resize(rgb, 0, 4, PilFilter::bilinear);
    ADD_FAILURE() << "no exception";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("0x4"), std::string::npos) << e.what();  // the message names the size
  }
}

}  // namespace
