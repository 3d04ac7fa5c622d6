#!/usr/bin/env bash
# The main job: every experiment of a profile, then every notebook, the summary table, and what finished.
#   ./run_all.sh --profile smoke        a few minutes on a CPU (one protocol config per method, 1 epoch a
#                                       stage on 1000 training images; one runner per core, up to 4)
#   ./run_all.sh --profile subset       the committed results (real CIFAR-10 subset, reduced budget)
#   ./run_all.sh --profile rehearsal    every full experiment at toy size (synthetic data where absent)
#   ./run_all.sh                        the full reproduction (GPU)
# Options: --only PATTERN (repeatable), --data-root DIR (default $DATA_ROOT, else ./data), --device auto|cpu|cuda,
#          --seeds N, --force, --allow-code-change (resume runs begun by other training code),
#          --configs DIR (default experiments/configs), --results DIR (default
#          results/PROFILE; the figures then go beside it, to DIR/figures), --jobs N (N runner processes
#          side by side, each taking every N-th (experiment, seed) pair and nproc/N CPU threads unless
#          OMP_NUM_THREADS is set; their output lines are prefixed [k/N]). Finished runs are skipped;
#          interrupted ones resume; Ctrl-C or SIGTERM stops every runner. Exit status: 0 all done,
#          1 a run failed, 2 a config error, 3 no data (both stop before the notebooks), 130 stopped.
set -euo pipefail
cd "$(dirname "$0")"
invocation=("./run_all.sh" "$@")
profile=full
jobs=
configs=experiments/configs
results=
run_args=()
outcome_args=()  # what selects the runs, for the closing report
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --profile=*) profile="${1#*=}"; shift ;;
    --only|--seeds) run_args+=("$1" "$2"); outcome_args+=("$1" "$2"); shift 2 ;;
    --data-root|--device) run_args+=("$1" "$2"); shift 2 ;;
    --force|--allow-code-change) run_args+=("$1"); shift ;;
    --configs) configs="$2"; shift 2 ;;
    --results) results="$2"; run_args+=("$1" "$2"); shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --jobs=*) jobs="${1#*=}"; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see ./run_all.sh --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$jobs" ]; then  # smoke: small runs, one per core (a CPU run barely gains from a second thread)
  if [ "$profile" = smoke ]; then jobs=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc); jobs=$(( jobs > 4 ? 4 : jobs )); else jobs=1; fi
fi
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then echo "error: --jobs expects a positive integer, got '$jobs'" >&2; exit 2; fi
source scripts/env.sh
start=$(date +%s)
# The revision this invocation starts at (the runs it writes may dirty the tree by the end).
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && ! git diff --quiet HEAD -- 2>/dev/null; then revision="$revision-dirty"; fi
status=0
# Threads: the cores this process may use (nproc honours CPU affinity and quotas), shared by the jobs,
# unless OMP_NUM_THREADS says otherwise; each run records the count it used.
if [ -z "${OMP_NUM_THREADS:-}" ]; then
  cores=$(nproc)
  export OMP_NUM_THREADS=$(( cores / jobs > 0 ? cores / jobs : 1 ))
fi
errors=$(mktemp)
pids=()
# What this invocation cost (RESULTS STATUS), appended to RESULTS/invocations.json: a profile may take
# several, interrupted ones included.
record_invocation() {
  python -m experiments.invocation "$1" --seconds "$(( $(date +%s) - start ))" --status "$2" \
    --revision "$revision" --profile "$profile" --jobs "$jobs" -- "${invocation[@]}"
}
stop() {  # SIGINT / SIGTERM: stop every runner (each unwinds and keeps its last checkpoint), then say how to go on
  trap - INT TERM
  echo "run_all.sh: stopping ${#pids[@]} runner(s)..." >&2
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  rm -f "$errors"
  record_invocation "${results:-results/$profile}" 130 || true  # its time counts towards the cost too
  echo "interrupted: rerun the same command to go on (finished runs are skipped, interrupted ones resume)" >&2
  exit 130
}
trap stop INT TERM
# N runner processes on the same device(s), disjoint shards of the (experiment, seed) pairs; with more
# than one, their output lines are prefixed [k/N]. Each is started in the background (its own pid in
# pids, so that stop() reaches it) and waited for; their error lines are also kept in $errors.
for ((k = 0; k < jobs; k++)); do
  if [ "$jobs" -eq 1 ]; then
    python -m experiments.run "$configs" --profile "$profile" ${run_args[@]+"${run_args[@]}"} \
      2> >(tee -a "$errors" >&2) &
  else
    python -m experiments.run "$configs" --profile "$profile" --shard "$k/$jobs" --no-progress \
      ${run_args[@]+"${run_args[@]}"} > >(sed -u "s|^|[$k/$jobs] |") 2> >(tee -a "$errors" | sed -u "s|^|[$k/$jobs] |" >&2) &
  fi
  pids+=($!)
done
severity() { case "$1" in 0) echo 0 ;; 2) echo 2 ;; 3) echo 3 ;; *) echo 1 ;; esac; }
for pid in "${pids[@]}"; do  # the worst exit status: 3 no data, 2 a config error, 1 a failed run
  job_status=0
  wait "$pid" || job_status=$?
  job_status=$(severity "$job_status")
  if [ "$job_status" -gt "$status" ]; then status=$job_status; fi
done
pids=()
if [ "$status" -eq 3 ] || [ "$status" -eq 2 ]; then  # no data, or a config error: nothing to draw
  echo >&2
  echo "run_all.sh: stopped before the notebooks; the error that matters:" >&2
  grep "^error: " "$errors" | tail -n 1 >&2
  rm -f "$errors"
  exit "$status"
fi
rm -f "$errors"
if [ -n "$results" ]; then
  python -m experiments.notebooks --profile "$profile" --results "$results" --figures "$results/figures" || status=1
  figures="$results/figures"
else
  python -m experiments.notebooks --profile "$profile" || status=1
  results="results/$profile" figures="figures/$profile"
fi
echo
python -m experiments.summary "$results" || status=1
echo
seconds=$(( $(date +%s) - start ))
record_invocation "$results" "$status" || status=1
# What became of every run of the profile: the count finished, one line for each that did not, and why.
python -m experiments.outcome "$results" --profile "$profile" --configs "$configs" \
  ${outcome_args[@]+"${outcome_args[@]}"} || status=1
echo "total wall time: ${seconds}s (profile $profile; results in $results, figures in $figures; recorded in $results/invocations.json)"
exit "$status"
