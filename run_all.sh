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
#          interrupted ones resume; Ctrl-C or SIGTERM stops every runner, or the notebooks. Exit status: 0 all done,
#          1 a run failed, 2 a usage or config error, 3 no data (both stop before the notebooks), 130 stopped.
set -euo pipefail
cd "$(dirname "$0")"
invocation=("./run_all.sh" "$@")
profile=full
profiles="smoke subset full rehearsal"  # training/config.py PROFILES (tests/test_run_all.py keeps them equal)
jobs=
configs=experiments/configs
results=
run_args=()
outcome_args=()  # what selects the runs, for the closing report
usage_error() { echo "error: $1 (see ./run_all.sh --help)" >&2; exit 2; }
# A flag's value: missing when the flag comes last or is followed by another flag.
value_of() { if [ "$2" -lt 2 ] || [[ "$3" == --* ]] || [ -z "$3" ]; then usage_error "$1 expects a value"; fi; }
while [ $# -gt 0 ]; do
  case "$1" in
    --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;  # --flag=value is --flag value
  esac
  case "$1" in
    --profile) value_of "$1" $# "${2-}"; profile="$2"; shift 2 ;;
    --only|--seeds) value_of "$1" $# "${2-}"; run_args+=("$1" "$2"); outcome_args+=("$1" "$2"); shift 2 ;;
    --data-root|--device) value_of "$1" $# "${2-}"; run_args+=("$1" "$2"); shift 2 ;;
    --force|--allow-code-change) run_args+=("$1"); shift ;;
    --configs) value_of "$1" $# "${2-}"; configs="$2"; shift 2 ;;
    --results) value_of "$1" $# "${2-}"; results="$2"; run_args+=("$1" "$2"); shift 2 ;;
    --jobs) value_of "$1" $# "${2-}"; jobs="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) usage_error "unknown option $1" ;;
  esac
done
# Every value checked before any work: a typo ends here in one line, not after the runs.
if [[ " $profiles " != *" $profile "* ]]; then usage_error "--profile $profile: unknown; choose one of ${profiles// /, }"; fi
if [ ! -d "$configs" ]; then usage_error "--configs $configs: not a folder"; fi
for ((i = 0; i < ${#run_args[@]}; i++)); do
  case "${run_args[$i]}" in
    --seeds) if ! [[ "${run_args[$((i + 1))]}" =~ ^[1-9][0-9]{0,8}$ ]]; then
        usage_error "--seeds expects a positive integer, got '${run_args[$((i + 1))]}'"; fi ;;
    --device) case "${run_args[$((i + 1))]}" in auto|cpu|cuda) ;; *)
        usage_error "--device ${run_args[$((i + 1))]}: unknown; choose one of auto, cpu, cuda" ;; esac ;;
  esac
done
if [ -n "$jobs" ] && ! [[ "$jobs" =~ ^[1-9][0-9]{0,3}$ ]]; then usage_error "--jobs expects a positive integer, got '$jobs'"; fi
if [ -z "$jobs" ]; then  # smoke: small runs, one per core (a CPU run barely gains from a second thread)
  if [ "$profile" = smoke ]; then jobs=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc); jobs=$(( jobs > 4 ? 4 : jobs )); else jobs=1; fi
fi
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
stage=runners
stop() {  # SIGINT / SIGTERM: stop every runner (each unwinds and keeps its last checkpoint), then say how to go on
  trap - INT TERM
  if [ "$stage" = runners ]; then echo "run_all.sh: stopping ${#pids[@]} runner(s)..." >&2
  else echo "run_all.sh: stopping the $stage..." >&2; fi
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
k=0
for pid in "${pids[@]}"; do  # the worst exit status: 3 no data, 2 a config error, 1 a failed run
  job_status=0
  wait "$pid" || job_status=$?
  if [ "$job_status" -gt 128 ]; then  # a runner gone without its own word: its runs are "not run" below
    why=""; if [ "$job_status" -eq 137 ]; then why=" (SIGKILL: often the kernel's out-of-memory killer; see dmesg)"; fi
    echo "run_all.sh: runner $k/$jobs was stopped by signal $((job_status - 128))$why; the runs it had not finished are listed at the end" >&2
  fi
  k=$((k + 1))
  job_status=$(severity "$job_status")
  if [ "$job_status" -gt "$status" ]; then status=$job_status; fi
done
pids=()
if [ "$status" -eq 3 ] || [ "$status" -eq 2 ]; then  # no data, or a config error: nothing to draw
  echo >&2
  echo "run_all.sh: stopped before the notebooks; the error that matters:" >&2
  # the runner's own lines ("error: ..."), or a usage error of its command line ("...: error: ...")
  grep -E "^(error: |python -m experiments.run: error: )" "$errors" | tail -n 1 >&2 || echo "(see the messages above)" >&2
  rm -f "$errors"
  exit "$status"
fi
rm -f "$errors"
# In the background and waited for, so that a signal reaches stop() at once, not after every notebook.
stage=notebooks
if [ -n "$results" ]; then
  python -m experiments.notebooks --profile "$profile" --results "$results" --figures "$results/figures" &
  figures="$results/figures"
else
  python -m experiments.notebooks --profile "$profile" &
  results="results/$profile" figures="figures/$profile"
fi
pids=($!)
wait "${pids[0]}" || status=1
pids=()
stage=summary
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
