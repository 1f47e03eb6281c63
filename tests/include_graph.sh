#!/usr/bin/env bash
# The include graph between modules has no cycle. A module is a header and its source
# (include/cprfl/<area>/<m>.h + src/<area>/<m>.cpp); an edge runs from a module to each
# cprfl header it includes. tsort (coreutils) names a loop if there is one.
# Usage: include_graph.sh SOURCE_DIR
set -euo pipefail
root=${1:?usage: include_graph.sh SOURCE_DIR}
cd "$root"
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
for file in include/cprfl/*/*.h src/*/*.cpp; do
  case $file in
    include/cprfl/*) module=${file#include/} ;;
    src/*) module=cprfl/${file#src/}; module=${module%.cpp}.h ;;
  esac
  { grep -oE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"cprfl/[^"]+"' "$file" || true; } | sed -E 's/.*"(cprfl\/[^"]+)"/\1/' |
    while read -r target; do
      [ "$target" = "$module" ] || echo "$module $target"
    done >> "$edges"
done
count=$(wc -l < "$edges")
if ! report=$(tsort "$edges" 2>&1 > /dev/null) || [ -n "$report" ]; then
  echo "$report" >&2
  echo "include cycle among the modules tsort names above ($count include edges checked)" >&2
  exit 1
fi
echo "include graph: $count edges between modules, no cycle"
