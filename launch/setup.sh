#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for ser-dist: the system audio libraries torchcodec and
# soundfile load (ffmpeg, libsndfile), Debian's chromium and chromium-driver (the demo's browser test;
# nothing downloads a browser), a virtual environment in .venv, and ser-dist with its test, DeepSpeed,
# demo, ONNX and VAD extras. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in ffmpeg libsndfile1 sox; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
browser=()  # the demo's browser test (tests/test_demo_browser.py skips, saying why, without them)
for pkg in chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || browser+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ] || [ ${#browser[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  if [ ${#browser[@]} -gt 0 ]; then
    if apt-cache show chromium chromium-driver >/dev/null 2>&1; then
      missing+=("${browser[@]}")
    else  # Ubuntu has them as snaps only
      echo "setup: no Debian chromium / chromium-driver packages here; the browser test of ser-dist demo will skip"
    fi
  fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,deepspeed,demo,onnx,vad]"
echo "setup: ready ($(.venv/bin/python -c 'import torch, transformers, datasets, accelerate; print(f"torch {torch.__version__}, transformers {transformers.__version__}, datasets {datasets.__version__}, accelerate {accelerate.__version__}")'))"
