// The lookup of shipped data: CPRFL_DATA_DIR first, then the install prefix, then the source tree.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "cprfl/common/shipped_data.h"
#include "test_support.h"

using namespace cprfl;
using cprfl::testing::TempDir;

TEST(ShippedData, EnvironmentFirstThenTheSourceTree) {
  const std::string vocab = "data/clip/bpe_simple_vocab_16e6.txt.gz";
  unsetenv("CPRFL_DATA_DIR");
  EXPECT_EQ(find_shipped_data(vocab), cprfl::testing::source_dir() + "/" + vocab);
  TempDir dir;
  std::filesystem::create_directories(dir.file("clip"));
  cprfl::testing::write_text(dir.file("clip/bpe_simple_vocab_16e6.txt.gz"), "x");
  setenv("CPRFL_DATA_DIR", dir.path().c_str(), 1);
  EXPECT_EQ(find_shipped_data(vocab), dir.file("clip/bpe_simple_vocab_16e6.txt.gz"));
  EXPECT_EQ(shipped_data_roots().front(), dir.path());
  unsetenv("CPRFL_DATA_DIR");
  // Only data/... paths are shipped; a path that exists is used as it is.
  EXPECT_EQ(find_shipped_data("clip/bpe_simple_vocab_16e6.txt.gz"), "");
  EXPECT_EQ(resolve_input_path("no/such/file.txt"), "no/such/file.txt");
  EXPECT_EQ(resolve_input_path(dir.file("clip")), dir.file("clip"));
}
