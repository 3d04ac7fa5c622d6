#!/usr/bin/env bash
# The main job: every experiment of a profile, then every notebook, then the summary table.
#   ./run_all.sh --profile smoke        a few minutes on a CPU (2 epochs on 2000 images)
#   ./run_all.sh --profile subset       the committed results (real CIFAR-10 subset, reduced budget)
#   ./run_all.sh                        the full reproduction (GPU)
# Options: --only PATTERN, --data-root DIR (default $DATA_ROOT, else ./data), --device auto|cpu|cuda,
#          --seeds N, --force, --jobs N (N runner processes side by side, each taking every N-th
#          (experiment, seed) pair and nproc/N CPU threads unless OMP_NUM_THREADS is set; their
#          output lines are prefixed [k/N]). Finished runs are skipped; interrupted ones resume.
set -euo pipefail
cd "$(dirname "$0")"
profile=full
jobs=1
run_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --profile=*) profile="${1#*=}"; shift ;;
    --only|--data-root|--device|--seeds) run_args+=("$1" "$2"); shift 2 ;;
    --force) run_args+=("$1"); shift ;;
    --jobs) jobs="$2"; shift 2 ;;
    --jobs=*) jobs="${1#*=}"; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see ./run_all.sh --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then echo "error: --jobs expects a positive integer, got '$jobs'" >&2; exit 2; fi
source scripts/env.sh
start=$(date +%s)
status=0
if [ "$jobs" -eq 1 ]; then
  python -m experiments.run experiments/configs --profile "$profile" ${run_args[@]+"${run_args[@]}"} || status=$?
else
  # N processes on the same device(s), disjoint shards of the (experiment, seed) pairs. Unless
  # OMP_NUM_THREADS says otherwise, they share the CPU cores instead of each taking all of them.
  if [ -z "${OMP_NUM_THREADS:-}" ]; then
    cores=$(nproc)
    export OMP_NUM_THREADS=$(( cores / jobs > 0 ? cores / jobs : 1 ))
  fi
  pids=()
  for ((k = 0; k < jobs; k++)); do
    ( python -m experiments.run experiments/configs --profile "$profile" --shard "$k/$jobs" --no-progress \
        ${run_args[@]+"${run_args[@]}"} 2>&1 | sed -u "s|^|[$k/$jobs] |" ) &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do  # wait for every job: 2 if one had a config error, else 1 if one failed
    job_status=0
    wait "$pid" || job_status=$?
    if [ "$job_status" -eq 2 ]; then status=2; elif [ "$job_status" -ne 0 ] && [ "$status" -eq 0 ]; then status=1; fi
  done
fi
if [ "$status" -eq 2 ]; then exit 2; fi  # a config error: nothing ran
python -m experiments.notebooks --profile "$profile" || status=1
echo
python -m experiments.summary "results/$profile"
echo
echo "total wall time: $(( $(date +%s) - start ))s (profile $profile; results in results/$profile, figures in figures/$profile)"
exit "$status"
