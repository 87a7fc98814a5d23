#!/usr/bin/env bash
# A stranger's install: build the wheel, install it (not editable) into a fresh virtual environment
# with the extras of the README's first command, and run the CLI there from outside the checkout,
# so the installed package is what gets imported. Called by .ci/run before the test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
EXTRAS="torch,plot"   # the README's first command installs ".[torch,plot]" (tests/test_readme.py keeps them equal)
TORCH="torch==2.13.0" # first, explicitly: the extra's range would let a fresh venv pull PyPI's multi-GB CUDA build
WORK="$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)" # tmpfs: the 1.2 GB venv is written and removed in seconds
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS
step() { echo "fresh-install smoke [$((SECONDS - start)) s]: $*"; }

step "building the wheel from the checkout's files (no stale build/ folder can leak into it)"
mkdir "$WORK/src"
(cd "$ROOT" && git ls-files -co --exclude-standard -z | tar --null --ignore-failed-read -cf - -T -) | tar -xf - -C "$WORK/src"
python -m pip wheel --no-deps --quiet -w "$WORK/dist" "$WORK/src"
wheel="$(ls "$WORK"/dist/onnxcompress-*.whl)"

step "installing $(basename "$wheel")[$EXTRAS] into a fresh virtual environment"
python -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
"$PY" -m pip install --quiet --no-compile "$TORCH" # --no-compile: only what runs gets byte-compiled
"$PY" -m pip install --quiet --no-compile "$wheel[$EXTRAS]"

cd "$WORK"
OC="$WORK/venv/bin/onnxcompress"
installed="$("$PY" -c 'import onnxcompress; print(onnxcompress.__file__)')"
case "$installed" in
  "$WORK/venv/"*) step "onnxcompress imported from $installed" ;;
  *) echo "fresh-install smoke: onnxcompress imported from $installed, not from the fresh venv" >&2; exit 1 ;;
esac
"$OC" --version
"$OC" --help > /dev/null
model="$("$PY" -c 'import onnx, pathlib; print(pathlib.Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx")')"
step "inspect, run and verify on $(basename "$model") (shipped with the onnx wheel)"
"$OC" inspect "$model" > /dev/null
"$OC" run "$model" -p remove-initializer-inputs -p fold-constants -p cleanup --no-bench -o "$WORK/small.onnx" > /dev/null
"$OC" verify "$model" "$WORK/small.onnx" > /dev/null
code=0
"$OC" bench "$model" --threads 0 2> "$WORK/usage.txt" || code=$?
if [ "$code" -ne 2 ] || ! grep -q -- "--threads" "$WORK/usage.txt"; then
  echo "fresh-install smoke: 'bench --threads 0' exited $code without naming the option:" >&2
  cat "$WORK/usage.txt" >&2
  exit 1
fi
step "passed"
