# Sourced by the scripts: create .venv and install the project (with test extras) when missing or stale.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
# Re-install only when pyproject.toml changed since the last install with these extras.
EXTRAS="${EXTRAS:-embedded,test}"
STAMP=".venv/.installed-${EXTRAS//,/+}-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
  echo "==> installing the project and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  rm -f ".venv/.installed-${EXTRAS//,/+}-"*
  touch "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
