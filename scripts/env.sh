# Sourced by run_all.sh and run_tests.sh: make .venv on first use (and again when
# requirements.txt changes), then put it first on PATH. A lock (flock on .venv.lock) makes two
# set-ups started at once safe: the second waits, then finds the environment ready.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha256"
TORCHVISION="$VENV/.torchvision"  # empty when torchvision loads, else the line saying which build to install
want="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
ready() { [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; }
if ! ready; then
  exec 9>"$ROOT/.venv.lock"
  if ! flock -n 9; then
    echo "waiting for another set-up of $VENV to finish..."
    flock 9
  fi
fi
if ! ready; then
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
  # torchvision (CIFAR download, ImageNet only) must be the build made for the installed torch.
  (cd "$ROOT" && PYTHONPATH="$ROOT" "$VENV/bin/python" -m training.torchvision_check > "$TORCHVISION") || true
  echo "$want" > "$STAMP"
fi
if { true >&9; } 2>/dev/null; then flock -u 9; exec 9>&-; fi
if [ -s "$TORCHVISION" ]; then
  echo "warning: CIFAR downloads and ImageNet need torchvision: $(cat "$TORCHVISION")" >&2
fi
export PATH="$VENV/bin:$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND="${MPLBACKEND:-Agg}"
