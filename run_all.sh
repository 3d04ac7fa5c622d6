#!/usr/bin/env bash
# The main job: every experiment of a profile, then every notebook, then the summary table.
#   ./run_all.sh --profile smoke        a few minutes on a CPU (2 epochs on 2000 images)
#   ./run_all.sh --profile subset       the committed results (real CIFAR-10 subset, reduced budget)
#   ./run_all.sh                        the full reproduction (GPU)
# Options: --only PATTERN, --data-root DIR (default $DATA_ROOT, else ./data), --device auto|cpu|cuda,
#          --seeds N, --force. Finished runs are skipped; interrupted ones resume.
set -euo pipefail
cd "$(dirname "$0")"
profile=full
run_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --profile=*) profile="${1#*=}"; shift ;;
    --only|--data-root|--device|--seeds) run_args+=("$1" "$2"); shift 2 ;;
    --force) run_args+=("$1"); shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see ./run_all.sh --help)" >&2; exit 2 ;;
  esac
done
source scripts/env.sh
start=$(date +%s)
status=0
python -m experiments.run experiments/configs --profile "$profile" ${run_args[@]+"${run_args[@]}"} || status=$?
if [ "$status" -eq 2 ]; then exit 2; fi  # a config error: nothing ran
python -m experiments.notebooks --profile "$profile" || status=1
echo
python -m experiments.summary "results/$profile"
echo
echo "total wall time: $(( $(date +%s) - start ))s (profile $profile; results in results/$profile, figures in figures/$profile)"
exit "$status"
