#!/usr/bin/env bash
# array.sbatch on a real SLURM: a one-node cluster on this machine runs the smoke profile as a job
# array of 2 tasks, and every run must finish exactly once.
#   DATA_ROOT=DIR scripts/slurm/test_local_cluster.sh      (DIR holds cifar-10-batches-py)
# Needs root: installs Debian's slurm-wlm and munge with apt (they stay installed), then starts
# munged, slurmctld and slurmd as plain processes (no systemd), with their config, key, sockets,
# state, logs and the results in a temporary folder and their own ports (16817/16818, munge socket
# in the folder), so a SLURM or munge already on the machine is left alone. Then it submits
#   sbatch --array=0-1 scripts/slurm/array.sbatch --results TMP/results   (PROFILE=smoke)
# waits for both tasks and checks: every run that `--list` names has its metrics.json and no other
# run folder does; each run's [run] and [done] lines appear exactly once across the task logs, in
# the log of the task whose shard holds it; there is no [resume] or [skip] line; both tasks
# COMPLETED with exit code 0. Exit status 0 only then. The cluster is always torn down; the
# temporary folder is removed after a pass (KEEP=1 keeps it) and kept after a failure.
# Not part of ./run_tests.sh (root, apt, minutes of training). Options through the environment:
# PROFILE (smoke), TASKS (2), TIMEOUT_MIN (60: how long to wait for the array), SKIP_APT=1, ONLY
# (a pattern: only those experiments, for a quicker check; the runner's --only).
#
# Learned in a Debian 12 container (no systemd, cgroup v1 mounts, 2 CPUs):
# - apt's postinst cannot start the services (policy-rc.d denies it) and there is no systemd:
#   the daemons are started directly, in the foreground (-D / -F) as background processes of this
#   script, so their process ids are known and only they are stopped at the end.
# - munged refuses to run as root without --force; it runs as the munge user (setpriv), with a
#   key made here (mungekey). Its socket folder must be traversable by all (0711), and so must the
#   folders above it (mktemp -d makes 0700: opened to 0755).
# - cgroups are not usable in a container: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none,
#   JobAcctGatherType=jobacct_gather/none; no accounting daemon (AccountingStorageType=none), so
#   no sacct: finished tasks are read with scontrol (kept for MinJobAge seconds).
# - select/cons_tres with CR_CPU works in 22.05 (Debian 12's version); memory is not a consumable
#   resource, so no --mem is needed. RealMemory is set below MemTotal: a node that reports less
#   memory than configured is drained.
# - "mpi/pmix_v4: can not load PMIx library" errors in the daemon logs are harmless (MpiDefault=none).
# - A job requeued with scontrol requeue waits about 2 minutes (BeginTime) before it starts again.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO="$PWD"
PROFILE="${PROFILE:-smoke}"
TASKS="${TASKS:-2}"
TIMEOUT_MIN="${TIMEOUT_MIN:-60}"
select=(--profile "$PROFILE")
if [ -n "${ONLY:-}" ]; then select+=(--only "$ONLY"); fi
start=$(date +%s)
say() { echo "[cluster-test] $(date '+%T') $*"; }
die() { echo "[cluster-test] error: $*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then die "needs root (apt, munged as the munge user, slurmd)"; fi
if [ -z "${DATA_ROOT:-}" ] || [ ! -d "$DATA_ROOT/cifar-10-batches-py" ]; then
  die "set DATA_ROOT to a folder holding cifar-10-batches-py (DATA_ROOT='${DATA_ROOT:-}')"
fi

if [ "${SKIP_APT:-}" != 1 ]; then
  say "apt-get update; apt-get install slurm-wlm munge"
  apt-get update -q > /dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge > /dev/null
fi
for tool in munged mungekey setpriv slurmctld slurmd sbatch squeue scontrol sinfo; do
  command -v "$tool" > /dev/null || die "$tool not found"
done

# ------------------------------------------------------------------ teardown, always
WORK="$(mktemp -d /tmp/slurm-local-test.XXXXXX)"
chmod 755 "$WORK"
MUNGED_PID= SLURMCTLD_PID= SLURMD_PID= JOB=
stop_pid() {  # $1: name, $2: pid of a process this script started
  local name="$1" pid="$2" i
  [ -n "$pid" ] && kill -0 "$pid" 2> /dev/null || return 0
  kill -TERM "$pid" 2> /dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2> /dev/null; then kill -KILL "$pid" 2> /dev/null || true; fi
  wait "$pid" 2> /dev/null || true
  say "stopped $name (pid $pid)"
}
teardown() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "$JOB" ] && [ -n "$(squeue -h -j "$JOB" 2> /dev/null)" ]; then
    say "cancelling job $JOB"
    scancel "$JOB"
    for i in $(seq 30); do [ -z "$(squeue -h -j "$JOB" 2> /dev/null)" ] && break; sleep 1; done
  fi
  stop_pid slurmd "$SLURMD_PID"
  stop_pid slurmctld "$SLURMCTLD_PID"
  stop_pid munged "$MUNGED_PID"
  if [ "$status" -eq 0 ] && [ "${KEEP:-}" != 1 ]; then
    rm -rf "$WORK"
    say "cluster torn down; removed $WORK"
  else
    say "cluster torn down; kept $WORK (daemon logs in $WORK/log, task logs in $WORK/logs)"
  fi
  exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ munge
mkdir -p "$WORK/munge" "$WORK/log" "$WORK/logs" "$WORK/etc" "$WORK/state" "$WORK/spool"
mungekey --create --keyfile="$WORK/munge/munge.key"
chown -R munge:munge "$WORK/munge"
chmod 0711 "$WORK/munge"
chmod 0600 "$WORK/munge/munge.key"
SOCKET="$WORK/munge/munge.sock"
setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground \
  --key-file="$WORK/munge/munge.key" --socket="$SOCKET" --pid-file="$WORK/munge/munged.pid" \
  --log-file="$WORK/munge/munged.log" --seed-file="$WORK/munge/munged.seed" > "$WORK/log/munged.out" 2>&1 &
MUNGED_PID=$!
for i in $(seq 50); do
  if munge -n -S "$SOCKET" 2> /dev/null | unmunge -S "$SOCKET" > /dev/null 2>&1; then break; fi
  kill -0 "$MUNGED_PID" 2> /dev/null || { cat "$WORK/log/munged.out" >&2; die "munged exited"; }
  sleep 0.2
done
munge -n -S "$SOCKET" | unmunge -S "$SOCKET" > /dev/null || die "munge does not answer on $SOCKET"
say "munged up (pid $MUNGED_PID, socket $SOCKET)"

# ------------------------------------------------------------------ slurm
NODE="$(hostname -s)"
CPUS="$(nproc)"
MEM_MB=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
export SLURM_CONF="$WORK/etc/slurm.conf"
cat > "$SLURM_CONF" <<EOF
ClusterName=localtest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=3600
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -c -f "$SLURM_CONF" > "$WORK/log/slurmctld.out" 2>&1 &
SLURMCTLD_PID=$!
slurmd -D -N "$NODE" -f "$SLURM_CONF" > "$WORK/log/slurmd.out" 2>&1 &
SLURMD_PID=$!
state=
for i in $(seq 120); do
  state="$(sinfo -h -n "$NODE" -o %T 2> /dev/null || true)"
  [ "$state" = idle ] && break
  if [[ "$state" == *drain* || "$state" == down* ]] && [ $((i % 10)) -eq 0 ]; then
    scontrol update nodename="$NODE" state=resume 2> /dev/null || true
  fi
  kill -0 "$SLURMCTLD_PID" 2> /dev/null || break
  kill -0 "$SLURMD_PID" 2> /dev/null || break
  sleep 0.5
done
if [ "$state" != idle ]; then
  sinfo -R 2> /dev/null || true
  tail -n 20 "$WORK/log/slurmctld.out" "$WORK/log/slurmd.out" >&2
  die "node $NODE is not idle (state '$state')"
fi
say "$(sinfo --version) up: node $NODE, $CPUS CPUs, ${MEM_MB} MB (slurmctld pid $SLURMCTLD_PID, slurmd pid $SLURMD_PID)"

# ------------------------------------------------------------------ the array
source scripts/env.sh  # .venv, made now if need be, rather than by both tasks at once
python -m experiments.run experiments/configs "${select[@]}" --list --shard 0/1 \
  | sed -n 's/^  \(.*\) seed \([0-9][0-9]*\)$/\1 \2/p' > "$WORK/expected.txt"
RUNS=$(wc -l < "$WORK/expected.txt")
[ "$RUNS" -gt 0 ] || die "profile $PROFILE lists no runs"
CPT=$(( CPUS / TASKS > 0 ? CPUS / TASKS : 1 ))
submitted=$(date +%s)
JOB="$(PROFILE="$PROFILE" sbatch --parsable --array="0-$((TASKS - 1))" --cpus-per-task="$CPT" \
  --output="$WORK/logs/%A_%a.out" scripts/slurm/array.sbatch --results "$WORK/results" ${ONLY:+--only "$ONLY"})"
JOB="${JOB%%;*}"
say "submitted array job $JOB: $TASKS tasks x $CPT CPU(s), profile $PROFILE${ONLY:+ --only $ONLY} ($RUNS runs), results in $WORK/results"

last=
deadline=$((submitted + TIMEOUT_MIN * 60))
while :; do
  queue="$(squeue -h -j "$JOB" -o '%i:%T' 2> /dev/null | sort | tr '\n' ' ')"
  [ -z "$queue" ] && break
  done_now=$(cat "$WORK"/logs/*.out 2> /dev/null | grep -c '^\[done\] ' || true)
  line="queue: ${queue% }; $done_now/$RUNS runs done"
  if [ "$line" != "$last" ]; then say "$line"; last="$line"; fi
  if [ "$(date +%s)" -gt "$deadline" ]; then die "the array did not finish within $TIMEOUT_MIN minutes"; fi
  kill -0 "$SLURMCTLD_PID" 2> /dev/null || die "slurmctld exited"
  kill -0 "$SLURMD_PID" 2> /dev/null || die "slurmd exited"
  sleep 10
done
finished=$(date +%s)
say "array job $JOB left the queue after $((finished - submitted))s"

# ------------------------------------------------------------------ checks
failures=()
fail() { failures+=("$*"); echo "[cluster-test] FAIL: $*"; }
for ((k = 0; k < TASKS; k++)); do
  f="$WORK/logs/${JOB}_$k.out"
  echo "----------------------------------------------------------------- task $k log ($f)"
  cat "$f" 2> /dev/null || fail "task $k wrote no log"
done
echo "-----------------------------------------------------------------"
declare -A task_state
while read -r line; do
  id=$(grep -o 'ArrayTaskId=[0-9]*' <<< "$line" | cut -d= -f2)
  st=$(grep -o 'JobState=[A-Z_]*' <<< "$line" | cut -d= -f2)
  ec=$(grep -o 'ExitCode=[0-9:]*' <<< "$line" | cut -d= -f2)
  rs=$(grep -o 'Restarts=[0-9]*' <<< "$line" | cut -d= -f2)
  run=$(grep -o 'RunTime=[0-9:-]*' <<< "$line" | cut -d= -f2)
  [ -n "$id" ] && task_state[$id]="$st exit $ec, restarts $rs, run time $run"
done < <(scontrol -o show job "$JOB" 2> /dev/null)
for ((k = 0; k < TASKS; k++)); do
  s="${task_state[$k]:-unknown}"
  [[ "$s" == "COMPLETED exit 0:0, restarts 0,"* ]] || fail "task $k: $s"
done

found="$(cd "$WORK/results" 2> /dev/null && find . -name metrics.json \
  | sed -n 's|^\./\(.*\)/seed\([0-9][0-9]*\)/metrics.json$|\1 \2|p' | sort || true)"
n_found=$(grep -c . <<< "$found" || true)
[ "$n_found" -eq "$RUNS" ] || fail "$RUNS runs listed, $n_found run folders with metrics.json"
[ "$found" = "$(sort "$WORK/expected.txt")" ] || fail "the run folders with metrics.json are not the listed runs: $(diff <(sort "$WORK/expected.txt") <(echo "$found") | grep '^[<>]' | tr '\n' ' ')"

logs=("$WORK"/logs/"${JOB}"_*.out)
once=0
i=0
while read -r name seed; do
  own="$WORK/logs/${JOB}_$((i % TASKS)).out"  # run i is in shard i mod TASKS
  for tag in run done; do
    n=$(cat "${logs[@]}" 2> /dev/null | grep -cF "[$tag] $name seed $seed: " || true)
    [ "$n" -eq 1 ] || fail "[$tag] $name seed $seed: $n lines across the task logs"
  done
  grep -qF "[done] $name seed $seed: " "$own" 2> /dev/null || fail "$name seed $seed did not finish in task $((i % TASKS))"
  n=$(cat "${logs[@]}" 2> /dev/null | grep -cF "[done] $name seed $seed: " || true)
  [ "$n" -eq 1 ] && once=$((once + 1))
  i=$((i + 1))
done < "$WORK/expected.txt"
resumes=$(cat "${logs[@]}" 2> /dev/null | grep -c '^\[resume\] ' || true)
skips=$(cat "${logs[@]}" 2> /dev/null | grep -c '^\[skip\] ' || true)
[ "$resumes" -eq 0 ] || fail "$resumes [resume] line(s)"
[ "$skips" -eq 0 ] || fail "$skips [skip] line(s)"

end=$(date +%s)
echo
echo "==================== SLURM local cluster test: $([ ${#failures[@]} -eq 0 ] && echo PASS || echo FAIL) ===================="
echo "$(sinfo --version), one node ($NODE, $CPUS CPUs); array job $JOB: $TASKS tasks x $CPT CPU(s), profile $PROFILE${ONLY:+ --only $ONLY}"
for ((k = 0; k < TASKS; k++)); do
  echo "task $k (shard $k/$TASKS): ${task_state[$k]:-unknown}"
done
echo "runs listed by --list: $RUNS; run folders with metrics.json: $n_found; [done] exactly once: $once/$RUNS;" \
  "[resume] lines: $resumes; [skip] lines: $skips"
echo "wall time: $((end - start))s in all (cluster setup $((submitted - start))s, array $((finished - submitted))s)"
if [ ${#failures[@]} -gt 0 ]; then
  printf 'failed: %s\n' "${failures[@]}"
  exit 1
fi
