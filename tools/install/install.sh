#!/usr/bin/env bash
# One-command install of restr-d2 and everything it needs (torch, detectron2, the field's
# libraries) into a virtual environment. Idempotent: a second run with nothing changed only
# checks that the environment still imports (a few seconds).
#
#   VENV=.venv            where the environment lives (created if missing)
#   PYTHON=python3        interpreter used to create it
#   RESTR_D2_USE_ENV=1    install into the interpreter $PYTHON itself instead of a venv
#   DETECTRON2_SRC=/path  install your own detectron2 source checkout (compiled ops included)
#   RESTR_D2_NO_CHROMIUM=1  do not install Chromium (the web demo's browser tests then skip)
#   A working detectron2 that is already importable is always left alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

say() { printf '[install] %s\n' "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH; set PYTHON=/path/to/python3.11"
"$PYTHON" tools/install/install_checks.py python || exit 1

if [ "${RESTR_D2_USE_ENV:-0}" = 1 ]; then
  PY=$(command -v "$PYTHON")
else
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  PY="$VENV/bin/python"
fi

# Chromium for the web demo's browser tests (tests/demo/test_web_browser.py drives it with
# Playwright; Playwright's own browser download needs a host this install does not reach).
# Debian's package, installed when we are root on Debian; anywhere else, or if apt fails, the
# install goes on and those tests skip saying how to enable them. RESTR_D2_NO_CHROMIUM=1 skips.
ensure_chromium() {
  [ "${RESTR_D2_NO_CHROMIUM:-0}" = 1 ] && return 0
  if [ -n "${RESTR_D2_CHROMIUM:-}" ] && [ -x "${RESTR_D2_CHROMIUM}" ]; then return 0; fi
  for b in chromium chromium-browser google-chrome; do
    command -v "$b" >/dev/null 2>&1 && return 0
  done
  local os_id=""
  [ -r /etc/os-release ] && os_id=$(. /etc/os-release && echo "${ID:-}")
  if [ "$(id -u)" != 0 ] || [ "$os_id" != debian ] || ! command -v apt-get >/dev/null 2>&1; then
    say "no Chromium found: the web demo's browser tests will skip (on Debian, as root: apt-get install chromium)"
    return 0
  fi
  say "installing Chromium (apt-get install chromium) for the web demo's browser tests"
  local log
  log=$(mktemp)
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >"$log" 2>&1; then
    say "Chromium: $(chromium --version 2>/dev/null || echo installed)"
  else
    tail -n 5 "$log" | sed 's/^/[install]   /'
    say "WARNING: apt-get install chromium failed (above); the browser tests will skip"
  fi
  rm -f "$log"
}
ensure_chromium

stamp_of() {
  cat requirements/requirements.txt requirements/constraints.txt tools/install/install.sh \
    tools/install/install_checks.py tools/install/install_detectron2.py setup.py | sha256sum | cut -d' ' -f1
}
ENV_PREFIX=$("$PY" -c 'import sys; print(sys.prefix)')
STAMP_FILE="$ENV_PREFIX/.restr_d2_install_stamp"
want=$(stamp_of)
check_env() {
  "$PY" -c "import torch, detectron2.engine, detectron2.projects.deeplab, restr_d2, maskformer_d2"
}
if [ -f "$STAMP_FILE" ] && [ "$(cat "$STAMP_FILE")" = "$want" ] && check_env 2>/dev/null; then
  say "up to date ($PY)"
  exit 0
fi

# A torch other than the pinned one (e.g. your own CUDA build) is kept if it is recent enough.
"$PY" tools/install/install_checks.py torch || exit 1
"$PY" tools/install/install_checks.py disk "$ENV_PREFIX" || exit 1
have_torch=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)

say "installing requirements (pinned in requirements/constraints.txt)"
if [ -n "$have_torch" ] && [ "${have_torch%%+*}" != "2.14.1" ]; then
  say "keeping your torch $have_torch"
  reqs=$(mktemp)
  grep -v '^torch' requirements/requirements.txt > "$reqs"
  "$PY" -m pip install -q --disable-pip-version-check -r "$reqs"
else
  "$PY" -m pip install -q --disable-pip-version-check -c requirements/constraints.txt \
    -r requirements/requirements.txt
fi

say "installing detectron2"
"$PY" tools/install/install_detectron2.py

say "installing restr-d2 (editable)"
"$PY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .

check_env || die "the environment does not import (traceback above); fix it and run again"
echo "$want" > "$STAMP_FILE"
say "done: $("$PY" -c 'import torch, detectron2; print(f"torch {torch.__version__}, detectron2 {detectron2.__version__}")')"
