#!/usr/bin/env bash
# A real one-node SLURM on this machine, for CI and for trying the workbench's jobs layer.
#
#   sudo jobs/slurm/local_cluster.sh start    # install if missing, configure, start, wait for idle
#   sudo jobs/slurm/local_cluster.sh status   # sinfo + what this script started
#   sudo jobs/slurm/local_cluster.sh stop     # stop only the daemons this script started
#
# Debian/Ubuntu, run as root, no systemd needed. The node is 127.0.0.1 with this machine's cores.
# Settings and why (Slurm 22.05; see `man slurm.conf`):
#   - proctrack/linuxproc and task/none: no cgroups, which containers and CI VMs often lack;
#   - no accounting daemon, so `sacct` cannot answer: a stand-in built on squeue is linked in
#     as /usr/local/bin/sacct (submitit reads job states from sacct);
#   - cred_expire=10 and a 1 s scheduler interval: a requeued job restarts within seconds
#     instead of the default ~2 minutes;
#   - KillWait=5: a cancelled or requeued job gets SIGKILL 5 s after SIGTERM, not 30 s.
# It writes /etc/slurm/slurm.conf only if that file is absent or was written by this script, so
# it never overwrites a real cluster's configuration.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
conf_dir=/etc/slurm
conf="$conf_dir/slurm.conf"
marker="# written by workbench jobs/slurm/local_cluster.sh"
state_dir=/run/workbench-slurm          # pid files of what this script started
sacct_link=/usr/local/bin/sacct
spool_ctld=/var/spool/slurmctld
spool_d=/var/spool/slurmd
log_dir=/var/log/slurm
wait_s="${WORKBENCH_SLURM_WAIT_S:-60}"

say() { echo "local_cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

need_root() {
  [ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts munged, slurmctld and slurmd)"
}

alive() {  # alive PIDFILE: the process named in the pid file is running
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_if_missing() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
     && command -v sbatch >/dev/null; then
    return
  fi
  command -v apt-get >/dev/null || die "slurmctld/slurmd missing and no apt-get to install them"
  say "installing slurmctld slurmd munge (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurmctld slurmd munge >/dev/null
}

start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    # The munge package's postinst normally creates the key; make one if it did not.
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
    else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge && chown munge:munge /run/munge
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running"
    return
  fi
  runuser -u munge -- /usr/sbin/munged
  cp /run/munge/munged.pid "$state_dir/munged.pid"
  munge -n | unmunge >/dev/null || die "munge does not work (munge -n | unmunge failed)"
}

write_conf() {
  if [ -e "$conf" ] && ! grep -qF "$marker" "$conf"; then
    die "$conf exists and was not written by this script; not overwriting a real cluster's config"
  fi
  local host cpus mem_mb
  host="$(hostname -s)"
  cpus="$(nproc)"
  # 90% of physical memory: configuring more than the node has would drain it.
  mem_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
  mkdir -p "$conf_dir" "$spool_ctld" "$spool_d" "$log_dir"
  cat > "$conf" <<EOF
$marker
ClusterName=workbench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=$spool_ctld
SlurmdSpoolDir=$spool_d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$log_dir/slurmctld.log
SlurmdLogFile=$log_dir/slurmd.log
AuthInfo=cred_expire=10
SchedulerParameters=bf_interval=1,sched_interval=1
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

link_sacct() {
  if [ -e "$sacct_link" ] || [ -L "$sacct_link" ]; then
    [ "$(readlink "$sacct_link" 2>/dev/null)" = "$here/sacct" ] || say "leaving existing $sacct_link alone"
    return
  fi
  ln -s "$here/sacct" "$sacct_link"
}

wait_idle() {
  local state="" i
  for ((i = 0; i < wait_s * 2; i++)); do
    state="$(sinfo -h -o %t 2>/dev/null | head -1 || true)"
    case "$state" in idle|mix|alloc) say "node is $state"; return 0 ;; esac
    sleep 0.5
  done
  say "node state after ${wait_s}s: '${state:-no answer}'; last log lines:"
  tail -5 "$log_dir/slurmctld.log" "$log_dir/slurmd.log" >&2 || true
  return 1
}

start() {
  need_root
  install_if_missing
  mkdir -p "$state_dir"
  start_munge
  write_conf
  if alive /run/slurmctld.pid; then
    say "slurmctld already running"
  else
    slurmctld -c          # -c: clean start, no jobs or node state from an earlier run
    sleep 0.5
    cp /run/slurmctld.pid "$state_dir/slurmctld.pid"
  fi
  if alive /run/slurmd.pid; then
    say "slurmd already running"
  else
    slurmd
    sleep 0.5
    cp /run/slurmd.pid "$state_dir/slurmd.pid"
  fi
  link_sacct
  wait_idle || { stop; die "the node did not become idle"; }
}

stop_one() {  # stop_one NAME: kill the daemon if this script started it, wait until it exits
  local pidfile="$state_dir/$1.pid" pid i
  [ -s "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill "$pid" 2>/dev/null; then
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    say "stopped $1 ($pid)"
  fi
  rm -f "$pidfile"
}

stop() {
  need_root
  # Jobs first, so no job step outlives its slurmd.
  if alive "$state_dir/slurmctld.pid"; then scancel --full --quiet --user=root 2>/dev/null || true; fi
  stop_one slurmd
  stop_one slurmctld
  stop_one munged
  if [ "$(readlink "$sacct_link" 2>/dev/null)" = "$here/sacct" ]; then rm -f "$sacct_link"; fi
}

status() {
  sinfo 2>&1 || true
  for name in munged slurmctld slurmd; do
    if alive "$state_dir/$name.pid"; then echo "$name: running (started here, pid $(cat "$state_dir/$name.pid"))"
    else echo "$name: not started by this script"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
