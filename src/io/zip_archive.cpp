#include "cprfl/io/zip_archive.h"

#include <caffe2/serialize/inline_container.h>

#include <algorithm>
#include <fstream>
#include <utility>

#include <zlib.h>

#include "cprfl/common/error.h"

namespace cprfl {

namespace {

// The zip's central directory: the CRC-32 of every entry, each offset and size checked
// against the file before it is read.
class CentralDirectory {
 public:
  explicit CentralDirectory(const std::string& path) : path_(path) {}

  // CRC-32 of every entry, by its name without the archive folder ("data/0").
  std::map<std::string, uint32_t> read_checksums() {
    file_.open(path_, std::ios::binary);
    file_.seekg(0, std::ios::end);
    file_size_ = static_cast<uint64_t>(file_.tellg());
    // End of central directory: 22 bytes + a comment of up to 65535.
    const uint64_t tail_size = std::min<uint64_t>(file_size_, 22 + 65535);
    const std::string tail = read_at(file_size_ - tail_size, tail_size);
    std::size_t eocd = std::string::npos;
    for (std::size_t i = tail.size() >= 22 ? tail.size() - 22 + 1 : 0; i-- > 0;)
      if (le(tail, i, 4) == 0x06054b50) {
        eocd = i;
        break;
      }
    if (eocd == std::string::npos) unreadable("no zip directory");
    uint64_t entries = le(tail, eocd + 10, 2);
    uint64_t directory_size = le(tail, eocd + 12, 4);
    uint64_t directory_offset = le(tail, eocd + 16, 4);
    if (directory_offset == 0xFFFFFFFFu || entries == 0xFFFFu || directory_size == 0xFFFFFFFFu) {
      // Zip64: a locator just before the end record points to the zip64 end record.
      const uint64_t eocd_in_file = file_size_ - tail_size + eocd;
      if (eocd_in_file < 20) unreadable("corrupted zip directory");
      std::string locator = read_at(eocd_in_file - 20, 20);
      if (le(locator, 0, 4) != 0x07064b50) unreadable("corrupted zip64 directory");
      std::string end64 = read_at(le(locator, 8, 8), 56);
      if (le(end64, 0, 4) != 0x06064b50) unreadable("corrupted zip64 directory");
      entries = le(end64, 32, 8);
      directory_size = le(end64, 40, 8);
      directory_offset = le(end64, 48, 8);
    }
    const std::string directory = read_at(directory_offset, directory_size);
    std::map<std::string, uint32_t> checksums;
    std::size_t at = 0;
    for (uint64_t i = 0; i < entries; ++i) {
      if (directory.size() - at < 46 || le(directory, at, 4) != 0x02014b50)
        unreadable("corrupted zip directory");
      const uint32_t crc = static_cast<uint32_t>(le(directory, at + 16, 4));
      const std::size_t name_length = le(directory, at + 28, 2);
      const std::size_t entry_size = 46 + name_length + le(directory, at + 30, 2) + le(directory, at + 32, 2);
      if (directory.size() - at < entry_size) unreadable("corrupted zip directory");
      std::string name = directory.substr(at + 46, name_length);
      auto slash = name.find('/');
      checksums[slash == std::string::npos ? name : name.substr(slash + 1)] = crc;
      at += entry_size;
    }
    return checksums;
  }

 private:
  // The same wording as LibTorch's reader errors get in read_torch_file.
  [[noreturn]] void unreadable(const std::string& what) const {
    fail_in(path_, "is not a readable PyTorch zip file (truncated or corrupted?): " + what);
  }

  std::string read_at(uint64_t offset, uint64_t count) {
    if (offset > file_size_ || count > file_size_ - offset) unreadable("corrupted zip directory");
    std::string bytes(count, '\0');
    file_.seekg(static_cast<std::streamoff>(offset));
    file_.read(bytes.data(), static_cast<std::streamsize>(count));
    if (!file_) unreadable("cannot read the zip directory");
    return bytes;
  }
  static uint64_t le(const std::string& bytes, std::size_t at, int width) {
    uint64_t value = 0;
    for (int i = width - 1; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(bytes[at + i]);
    return value;
  }

  const std::string& path_;
  std::ifstream file_;
  uint64_t file_size_ = 0;
};

}  // namespace

ZipArchive::ZipArchive(const std::string& path) : path_(path) {
  checksums_ = CentralDirectory(path_).read_checksums();
  reader_ = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path_);
}

ZipArchive::~ZipArchive() = default;

bool ZipArchive::has(const std::string& name) { return reader_->hasRecord(name); }

std::tuple<at::DataPtr, std::size_t> ZipArchive::get(const std::string& name) {
  auto [data, size] = reader_->getRecord(name);
  auto expected = checksums_.find(name);
  if (expected == checksums_.end()) fail_in(path_, "record '" + name + "' is missing from the zip directory");
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* bytes = static_cast<const Bytef*>(data.get());
  for (std::size_t done = 0; done < size;) {
    auto chunk = static_cast<uInt>(std::min<std::size_t>(size - done, 1u << 30));
    crc = crc32(crc, bytes + done, chunk);
    done += chunk;
  }
  if (static_cast<uint32_t>(crc) != expected->second)
    fail_in(path_, "record '" + name + "' fails its CRC-32 check (the file is corrupted)");
  return {std::move(data), size};
}

}  // namespace cprfl
