# Sourced by run_all.sh and run_tests.sh: make .venv on first use (and again when
# requirements.txt changes), then put it first on PATH.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha256"
want="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "setting up $VENV (first use, or requirements.txt changed)..."
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
  # Keep pip's output short (its log goes to a file); a dropped connection to the package
  # index is retried, by pip and then by a second and third attempt.
  installed=no
  for attempt in 1 2 3; do
    if "$VENV/bin/python" -m pip install --quiet --retries 10 --timeout 60 -r "$ROOT/requirements.txt" \
        > "$VENV/pip.log" 2>&1; then
      installed=yes
      break
    fi
    echo "pip install failed (attempt $attempt of 3)" >&2
    sleep $((attempt * 10))
  done
  if [ "$installed" != yes ]; then
    grep -v "is ignored" "$VENV/pip.log" | tail -20 >&2
    echo "error: installing requirements.txt into $VENV failed (log: $VENV/pip.log)" >&2
    exit 1
  fi
  echo "$want" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND="${MPLBACKEND:-Agg}"
