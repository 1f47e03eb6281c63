#pragma once
// Benchmark list files and labels files, in the format the VOC-LT and COCO-LT lists use.
//
// List file: one image a line, `relative/path.jpg id id …`, ids 0-based in labels-file
// order, separated by spaces or tabs; trailing spaces and CRLF endings are fine; blank
// lines are skipped; a line with only a path is an image with no positive label.
// A path containing spaces is written before a TAB: `my photos/a b.jpg<TAB>3 7`.
//
// Labels file: one class name a line (names may contain spaces, e.g. "traffic light"),
// or `name id` lines whose ids are exactly 0..C-1 in any order.
#include <cstddef>
#include <string>
#include <vector>

namespace cprfl {

struct ImageRecord {
  std::string path;         // as written in the list (relative to the dataset root)
  std::vector<int> labels;  // distinct class ids, in file order
  std::size_t line = 0;     // 1-based line number in the list file, for messages
};

struct ImageList {
  std::string source;  // the list file's path
  std::vector<ImageRecord> records;
};

// Reads a list file. Every id must be an integer in [0, num_classes); a repeated id on
// one line, an empty list or a missing file is an error naming the file and line.
ImageList read_image_list(const std::string& path, int num_classes);

// Reads a labels file; at least one class. A repeated name is a warning (the published
// COCO-LT labels file has truncated, repeated names); ids identify classes.
std::vector<std::string> read_labels(const std::string& path);

// Joins a list entry's path to the dataset root (absolute paths are kept as they are).
std::string resolve_image_path(const std::string& root, const std::string& relative);

}  // namespace cprfl
