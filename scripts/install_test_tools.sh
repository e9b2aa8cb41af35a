#!/usr/bin/env bash
# Tools the test suite needs beyond Python packages, installed from the registries this project may
# reach (Debian apt, npm). Idempotent: each step is skipped when its tool is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
mkdir -p "$TOOLS"

# GGUF export: llama-cpp-python (a Python dependency, no wheel on PyPI) compiles llama.cpp from source
# during `pip install`, which needs a C/C++ toolchain and cmake (about 4 minutes on 2 cores).
if ! command -v g++ >/dev/null 2>&1 || ! command -v cmake >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq build-essential cmake
fi

# Blob model store tests: Azurite, Microsoft's Azure Storage emulator (npm), into .tools/azurite.
if [ ! -x "$TOOLS/azurite/node_modules/.bin/azurite-blob" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq nodejs npm
  fi
  npm install --silent --no-audit --no-fund --prefix "$TOOLS/azurite" azurite@3.35.0
fi

# UI tests: headless Chromium and its WebDriver from Debian (the browser test drives them with selenium).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi
