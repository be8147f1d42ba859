#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster (munge + slurmctld + slurmd) on this machine, for tests and CI.
#
# Needs root and the Debian/Ubuntu packages slurmctld, slurmd, slurm-client and munge:
#   DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge
#
# Idempotent: a second call finds the daemons answering and only waits for the node to be idle.
# It writes /etc/slurm/slurm.conf only when none exists or when the existing one was written by this script,
# so it never overwrites the configuration of a real cluster.
#
# The cluster: partition "debug" (default), one node named `hostname -s` with all CPUs, no accounting
# database. Run snakemake against it with
#   --slurm-status-command squeue --slurm-no-account --default-resources slurm_partition=debug
# (without accounting, sacct cannot report finished jobs; squeue can, for MinJobAge=600 seconds).
#
# Exit status: 0 when `sinfo` shows the node idle, 2 when SLURM is not installed, 1 on any other failure.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
MARKER="# written by datamodels-pipeline tests/slurm/start_slurm.sh"
STATE_DIR=/var/lib/slurm/slurmctld
SPOOL_DIR=/var/lib/slurm/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
PARTITION=debug
TIMEOUT=${START_SLURM_TIMEOUT:-60}

say() { echo "start_slurm: $*" >&2; }
die() { say "$*"; exit 1; }

for program in munged munge unmunge slurmctld slurmd sinfo scontrol sbatch; do
    if ! command -v "$program" >/dev/null 2>&1; then
        say "$program not found; install slurmctld slurmd slurm-client munge"
        exit 2
    fi
done

# Wait up to $TIMEOUT seconds for a command to succeed.
wait_for() {
    local what=$1
    shift
    for _ in $(seq "$((TIMEOUT * 2))"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    die "timed out after ${TIMEOUT}s waiting for $what"
}

node_idle() {
    sinfo --noheader --partition "$PARTITION" --format '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)'
}
running() {  # the pid file names a live process
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}
ours() {  # a cluster this script set up (its daemons have pid files here), not a real one
    [ -f "$CONF" ] && grep -qF "$MARKER" "$CONF"
}
daemons_alive() {
    ! ours || { running "$RUN_DIR/slurmctld.pid" && running "$RUN_DIR/slurmd.pid"; }
}

# Everything already up (a second call, or a real cluster): nothing to do. The controller reports a node
# idle for a while after its slurmd died, hence the pid checks.
if scontrol ping 2>/dev/null | grep -q 'is UP' && node_idle && daemons_alive; then
    say "SLURM is already running: $(sinfo --noheader --format '%P %D %t %N' | head -1)"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "SLURM is not running and starting it needs root"

# --- munge -------------------------------------------------------------------------------------------
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
    install -d -o munge -g munge -m 0700 /etc/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        say "creating /etc/munge/munge.key"
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    # A stale socket or pid file from a dead munged makes a new one refuse to start.
    if [ -f /run/munge/munged.pid ] && ! kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then
        rm -f /run/munge/munged.pid /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    fi
    say "starting munged"
    if command -v runuser >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged || true
    else
        su -s /bin/sh munge -c /usr/sbin/munged || true
    fi
    wait_for "munge" munge_ok
fi

# --- slurm.conf --------------------------------------------------------------------------------------
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
# Leave room for the OS (and stay below what slurmd measures, or the node is drained as "Low RealMemory").
REAL_MB=$(( MEM_MB > 4096 ? MEM_MB - 2048 : MEM_MB * 3 / 4 ))

if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    die "$CONF exists and was not written by this script; refusing to overwrite it (SLURM is not answering: check it)"
fi
install -d -m 0755 "$CONF_DIR" "$LOG_DIR" "$RUN_DIR" "$STATE_DIR" "$SPOOL_DIR"
NEW_CONF=$(mktemp)
cat >"$NEW_CONF" <<EOF
$MARKER
# A single-node test cluster: do not use in production.
ClusterName=datamodels-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
# squeue reports a finished job for MinJobAge seconds; the snakemake plugin needs >= 3 x its first poll delay.
MinJobAge=600
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
if ! cmp -s "$NEW_CONF" "$CONF"; then
    say "writing $CONF (node $HOST: $CPUS CPUs, RealMemory=$REAL_MB MB)"
    install -m 0644 "$NEW_CONF" "$CONF"
fi
rm -f "$NEW_CONF"

# --- daemons -----------------------------------------------------------------------------------------
if running "$RUN_DIR/slurmctld.pid"; then
    scontrol reconfigure >/dev/null 2>&1 || true
else
    say "starting slurmctld"
    /usr/sbin/slurmctld
fi
wait_for "slurmctld (scontrol ping)" sh -c 'scontrol ping | grep -q "is UP"'
if ! running "$RUN_DIR/slurmd.pid"; then
    say "starting slurmd"
    /usr/sbin/slurmd -N "$HOST"
fi

# A node left DOWN/DRAINED by an earlier unclean stop comes back with an explicit resume.
for _ in $(seq "$((TIMEOUT * 2))"); do
    state=$(sinfo --noheader --partition "$PARTITION" --format '%t' 2>/dev/null | head -1 || true)
    case "$state" in
        idle* | mix* | alloc*) break ;;
        down* | drain* | drng*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
if ! node_idle; then
    sinfo -R >&2 || true
    tail -20 "$LOG_DIR/slurmd.log" "$LOG_DIR/slurmctld.log" >&2 || true
    die "node $HOST did not become idle within ${TIMEOUT}s"
fi
# The snakemake plugin reads MinJobAge from `scontrol show config`; it must answer.
scontrol show config >/dev/null || die "'scontrol show config' fails"
say "SLURM is up: $(sinfo --noheader --format '%P %D %t %N' | head -1)"
