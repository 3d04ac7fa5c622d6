#!/usr/bin/env bash
# Submit a profile as one job array of array.sbatch, sized to its runs:
#   scripts/slurm/submit.sh [SBATCH OPTIONS] PROFILE [RUNNER ARGS]
#   scripts/slurm/submit.sh --gres=gpu:1 --time=24:00:00 full --seeds 1
# counts the profile's (experiment, seed) runs with the runner's --list (RUNNER ARGS such as --only,
# --seeds count) and submits --array=0-<N-1>, one task per run, or TASKS tasks when TASKS is
# smaller (each then runs several). MAX_PARALLEL=M lets at most M run at once (--array=...%M).
# SBATCH OPTIONS come before the profile, each as one word (--time=24:00:00, not --time 24:00:00).
# Run from anywhere; the job runs in the repository root and logs to logs/slurm/.
set -euo pipefail
cd "$(dirname "$0")/../.."
sbatch_args=()
while [ $# -gt 0 ] && [[ "$1" == -* ]]; do
  if [ "$1" = -h ] || [ "$1" = --help ]; then sed -n '2,9p' "$0"; exit 0; fi
  sbatch_args+=("$1")
  shift
done
if [ $# -eq 0 ]; then
  echo "error: name the profile, e.g. scripts/slurm/submit.sh full (see --help)" >&2
  exit 2
fi
profile="$1"
shift
source "${ENV_SH:-scripts/env.sh}"  # as in array.sbatch
listing="$(python -m experiments.run experiments/configs --profile "$profile" --list --shard 0/1 "$@")"
runs="$(sed -n 's|^shard 0/1 runs \([0-9][0-9]*\) of them:$|\1|p' <<< "$listing")"
if ! [[ "$runs" =~ ^[0-9]+$ ]]; then
  echo "error: could not count the runs of profile $profile" >&2
  exit 1
fi
if [ "$runs" -eq 0 ]; then
  echo "profile $profile has no runs: nothing to submit"
  exit 0
fi
tasks="$runs"
if [ -n "${TASKS:-}" ]; then
  if ! [[ "$TASKS" =~ ^[1-9][0-9]*$ ]]; then echo "error: TASKS expects a positive integer, got '$TASKS'" >&2; exit 2; fi
  tasks=$((TASKS < runs ? TASKS : runs))
fi
array="0-$((tasks - 1))${MAX_PARALLEL:+%$MAX_PARALLEL}"
mkdir -p logs/slurm
unset SHARDS  # the array is 0..N-1: its tasks take N from it
echo "profile $profile: $runs run(s) in $tasks task(s): sbatch --array=$array ${sbatch_args[*]}"
PROFILE="$profile" exec sbatch --array="$array" ${sbatch_args[@]+"${sbatch_args[@]}"} scripts/slurm/array.sbatch "$@"
