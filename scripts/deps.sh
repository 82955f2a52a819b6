# Sourced by nanode's scripts: installs missing Debian packages with apt.
# Quick when everything is already installed (one dpkg query per package).
nanode_ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "nanode: installing Debian packages: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "nanode: need root (or sudo) to install ${missing[*]}" >&2; return 1; }
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# What building nanode and its tests needs.
NANODE_BUILD_PACKAGES=(build-essential cmake libeigen3-dev catch2 libcli11-dev zlib1g-dev libpng-dev nlohmann-json3-dev
  libopenmpi-dev openmpi-bin)
# What the test suite adds: clang's libFuzzer for the readers' fuzz targets.
NANODE_TEST_PACKAGES=(clang libclang-rt-14-dev)
