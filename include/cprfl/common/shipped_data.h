#pragma once
// Files shipped with cprfl (its data/ folder: the CLIP BPE vocabulary, the prompt embeddings,
// the VOC-LT / COCO-LT lists), found wherever cprfl runs from. A path "data/<rest>" is looked
// up, in order, as
//   $CPRFL_DATA_DIR/<rest>            (a folder laid out like data/)
//   <program folder>/../share/cprfl/data/<rest>  (an installed cprfl, wherever it was put)
//   <install prefix>/share/cprfl/data/<rest>     (the prefix configured at build time)
//   <source tree>/data/<rest>         (the checkout cprfl was built from)
#include <string>
#include <vector>

namespace cprfl {

// The folders searched for "data/<rest>", in order (each holds <rest> directly).
std::vector<std::string> shipped_data_roots();

// The first existing copy of "data/<rest>", or "" when there is none (or `path` does not
// start with "data/").
std::string find_shipped_data(const std::string& path);

// An input path as cprfl reads it: `path` itself when it exists (or is absolute), otherwise the
// shipped copy of a "data/..." path, otherwise `path` unchanged (its reader then names it).
std::string resolve_input_path(const std::string& path);

}  // namespace cprfl
