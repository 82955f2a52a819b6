#!/usr/bin/env bash
# Copies the header-only Debian dependencies (Eigen, Catch2, CLI11) with their CMake
# package files into .deps/usr (git-ignored), for a machine that has CMake and a
# compiler but none of Debian's packages (the lent GPU machine). Use it there as
#   cmake -DCMAKE_PREFIX_PATH=$PWD/.deps/usr ...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/deps.sh"
nanode_ensure_packages libeigen3-dev catch2 libcli11-dev
dst="$root/.deps/usr"
rm -rf "$dst"
mkdir -p "$dst/include" "$dst/share/eigen3" "$dst/lib/cmake" "$dst/share/cmake"
cp -r /usr/include/eigen3 "$dst/include/"
cp -r /usr/share/eigen3/cmake "$dst/share/eigen3/"
cp -r /usr/include/catch2 "$dst/include/"
cp -r /usr/lib/cmake/Catch2 "$dst/lib/cmake/"
cp -r /usr/include/CLI "$dst/include/"
cp -r /usr/share/cmake/CLI11 "$dst/share/cmake/"
du -sh "$dst"
