// Uses an installed cprfl: the backbone registry, and the shipped BPE vocabulary found through
// the install prefix (the consumer knows nothing of the source tree).
#include <iostream>

#include "cprfl/clip/tokenizer.h"
#include "cprfl/model/backbone_registry.h"

int main() {
  auto tokenizer = cprfl::clip::ClipTokenizer::load(cprfl::clip::default_vocab_path());
  std::cout << "backbones " << cprfl::backbone_names().size() << " tokens " << tokenizer.encode("a dog").size() << " vocab "
            << cprfl::clip::default_vocab_path() << "\n";
  return 0;
}
