#pragma once
// Run configuration: a fixed schema of dotted keys ("optim.lr") with types, defaults and
// help text. YAML files and `--set key=value` overrides are checked against it: an unknown
// key is an error that suggests the nearest valid one, a wrong type names the key and the
// type expected. The schema is the single place a new setting is declared.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cprfl {

enum class ValueType { kBool, kInt, kFloat, kString };

struct ConfigKey {
  std::string key;
  ValueType type;
  std::string default_value;
  std::string help;
  std::vector<std::string> choices;  // for strings: the allowed values (empty = any)
};

const std::vector<ConfigKey>& config_schema();

class Config {
 public:
  Config();  // every key at its default

  // Overlays a YAML file (nested maps; leaves are scalars). Errors name the file and key.
  // An input path it sets (input_path_keys) that names a file or folder beside the YAML file
  // is taken from there; other relative paths are read from the current folder, then from
  // cprfl's shipped data (common/shipped_data.h). Outputs (train.out_dir) stay relative to
  // the current folder.
  void merge_yaml_file(const std::string& path);
  void merge_yaml_text(const std::string& text, const std::string& origin);
  // Sets one key from text ("key=value" on the command line); origin names where it came from.
  void set(const std::string& key, const std::string& value, const std::string& origin);
  // Parses "key=value".
  void set_assignment(const std::string& assignment, const std::string& origin);

  bool get_bool(const std::string& key) const;
  std::int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;

  nlohmann::json to_json() const;  // nested, typed
  static Config from_json(const nlohmann::json& json, const std::string& origin);
  std::string to_yaml() const;

  // "key (type, default …): help" for every key — for `--help`-style listings.
  static std::string describe_schema();

 private:
  const ConfigKey& schema_entry(const std::string& key, const std::string& origin) const;
  std::map<std::string, std::string> values_;  // canonical text of each value
};

// The keys that name input files or folders.
const std::vector<std::string>& input_path_keys();

// The valid key closest to `key` by edit distance (for "did you mean" messages).
std::string nearest_config_key(const std::string& key);

}  // namespace cprfl
