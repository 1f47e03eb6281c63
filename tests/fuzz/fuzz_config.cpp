// YAML run configurations (config/config.h). A config that loads must survive what the tool
// does with it: the JSON copy kept in model files and the YAML copy written beside a run.
#include "cprfl/config/config.h"
#include "fuzz_support.h"

namespace cprfl::fuzz {

void fuzz_one(std::string_view bytes) {
  Config config;
  config.merge_yaml_text(std::string(bytes), "fuzz.yaml");
  nlohmann::json json = config.to_json();
  if (Config::from_json(json, "fuzz.json").to_json() != json) invariant_failed("the JSON round trip changed the config");
  Config again;
  again.merge_yaml_text(config.to_yaml(), "fuzz-written.yaml");
  if (again.to_json() != json) invariant_failed("the YAML round trip changed the config");
}

}  // namespace cprfl::fuzz
