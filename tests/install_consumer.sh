#!/usr/bin/env bash
# `cmake --install` into a scratch prefix, then: the installed tool runs from an empty folder and
# reads its shipped data from <prefix>/share/cprfl/data, and a separate CMake project builds
# against the installed library with find_package(cprfl).
# Usage: install_consumer.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=${1:?usage: install_consumer.sh BUILD_DIR SOURCE_DIR}
source_dir=${2:?usage: install_consumer.sh BUILD_DIR SOURCE_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
mkdir "$work/empty"
cd "$work/empty"
version=$("$work/prefix/bin/cprfl" --version)
echo "$version"
grep -qx "shipped data: $work/prefix/share/cprfl/data" <<< "$version" ||
  { echo "install: the installed tool does not read its own shipped data" >&2; exit 1; }
"$work/prefix/bin/cprfl" tokenize "a dog" | grep -q 49406
test -f "$work/prefix/share/cprfl/configs/fashion_lt.yaml"
test -f "$work/prefix/include/cprfl/model/backbone_registry.h"
cmake -S "$source_dir/tests/install_consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release > "$work/consumer.log" 2>&1 || { cat "$work/consumer.log" >&2; exit 1; }
cmake --build "$work/consumer" -j 2 >> "$work/consumer.log" 2>&1 || { tail -40 "$work/consumer.log" >&2; exit 1; }
output=$("$work/consumer/consumer")
echo "$output"
grep -q "^backbones 14 tokens 2 " <<< "$output"
echo "install: tool, data, headers, libraries and find_package(cprfl) all work"
