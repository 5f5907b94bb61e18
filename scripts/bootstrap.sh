#!/usr/bin/env bash
# Creates .venv with a Python 3.12+ interpreter and installs DARA into it.
# resonate-sdk 0.8 needs 3.12+, and many machines still default to an older python3,
# so look for one explicitly rather than trusting whatever `python3` is.
# Usage: scripts/bootstrap.sh [extra]   (extra: "local" for the service, "test" for the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-local}"

is_312_plus() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }

find_python() {
  local candidate
  for candidate in "${DARA_PYTHON:-}" python3.13 python3.12 python3 \
      "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || [ -x "$candidate" ] || continue
    if is_312_plus "$candidate"; then echo "$candidate"; return 0; fi
  done
  return 1
}

if [ ! -x .venv/bin/python ] || ! is_312_plus .venv/bin/python; then
  python=$(find_python) || {
    echo "DARA needs Python 3.12 or newer (resonate-sdk 0.8 requires it) and none was found." >&2
    echo "Install one (e.g. 'pyenv install 3.12') or point DARA_PYTHON at it." >&2
    exit 1
  }
  rm -rf .venv
  "$python" -m venv .venv
fi

stamp=".venv/.dara-installed-$extra"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[$extra]"
  touch "$stamp"
fi
