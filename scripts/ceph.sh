#!/usr/bin/env bash
# A single-host Ceph 16 for Blixard's tests and demo: one mon, one mgr, one OSD
# (memstore unless CEPH_OBJECTSTORE=bluestore), pool `rbd`, no systemd, all in DIR.
#
#   scripts/ceph.sh up     [DIR]  bootstrap (or restart a stopped cluster in DIR; no-op when it is up)
#                                 and wait until every PG is active+clean; prints the time taken
#   scripts/ceph.sh down   [DIR]  stop the daemons (data kept: memstore persists on a graceful stop)
#   scripts/ceph.sh status [DIR]  daemons and `ceph -s`; exit 0 only when up with all PGs active+clean
#   scripts/ceph.sh env    [DIR]  print `export CEPH_CONF=...` for the rbd/ceph clients
#   scripts/ceph.sh purge  [DIR]  kill the daemons and delete DIR
#
# DIR defaults to .ceph/ in the repository (gitignored).
# Knobs: CEPH_MON_PORT (msgr2 port, default 13300; msgr1 uses CEPH_MON_PORT+1) so that parallel
#        clusters do not clash; CEPH_OBJECTSTORE=memstore|bluestore; CEPH_POOL=rbd; CEPH_PG_NUM=8;
#        CEPH_TIMEOUT (seconds one ceph/rbd call may wait for a monitor, default 15);
#        CEPH_UP_TIMEOUT (seconds `up` may take in all, default 180);
#        CEPH_ADDR (the IPv4 address every daemon binds, default 127.0.0.1: the HA partition test
#        binds a storage network's address so that nodes in their own network namespaces reach it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CMD=${1:-}
DIR=$(realpath -m "${2:-$ROOT/.ceph}")
CONF=$DIR/ceph.conf
MARK=$DIR/.blixard-ceph      # written first: only a directory holding it is ever wiped
READY=$DIR/.bootstrapped     # written last: the cluster in DIR is complete
OBJECTSTORE=${CEPH_OBJECTSTORE:-memstore}
POOL=${CEPH_POOL:-rbd}
PG_NUM=${CEPH_PG_NUM:-8}
CALL_TIMEOUT=${CEPH_TIMEOUT:-15}
UP_TIMEOUT=${CEPH_UP_TIMEOUT:-180}
MGR_MODULES=/usr/share/ceph/mgr
PY=/usr/bin/python3          # ceph-common depends on it; not whatever python3 is first on PATH
export CEPH_CONF=$CONF
ADDR=${CEPH_ADDR:-127.0.0.1}
[[ $ADDR =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || { echo "CEPH_ADDR must be an IPv4 address, got '$ADDR'" >&2; exit 2; }
if [ -n "${CEPH_MON_PORT:-}" ]; then
  [[ $CEPH_MON_PORT =~ ^[0-9]+$ ]] && (( CEPH_MON_PORT >= 1024 && CEPH_MON_PORT < 65535 )) \
    || { echo "CEPH_MON_PORT must be a port in 1024..65534 (it uses that and the next)" >&2; exit 2; }
fi

T0=${EPOCHREALTIME/./}
elapsed() { local now=${EPOCHREALTIME/./}; printf '%d.%02d' $(( (now - T0) / 1000000 )) $(( (now - T0) % 1000000 / 10000 )); }
log() { printf '[ceph %6ss] %s\n' "$(elapsed)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Every client call is bounded twice: the client's own monitor connect timeout (`ceph
# --connect-timeout`; rbd, a C++ client, spells it --client-mount-timeout), and a hard kill in
# case it hangs anyway (without both, a client with no monitor waits forever).
c() { timeout -k 2 $((CALL_TIMEOUT + 10)) ceph --connect-timeout "$CALL_TIMEOUT" "$@"; }
r() { timeout -k 2 $((CALL_TIMEOUT + 60)) rbd --client-mount-timeout "$CALL_TIMEOUT" "$@"; }

# The port lives in the conf once a cluster exists (the monmap fixes it); before that, the knob.
mon_port() {
  if [ -f "$CONF" ]; then sed -n 's/^mon host = \[v2:[0-9.]*:\([0-9]*\),.*/\1/p' "$CONF"
  else echo "${CEPH_MON_PORT:-13300}"; fi
}

pid_of() { # pid_of <name like mon.a>: pid if that daemon of this cluster runs, else nothing
  local f=$DIR/run/$1.pid p
  [ -f "$f" ] || return 0
  p=$(cat "$f" 2>/dev/null || true)
  # a stale pid file may name a recycled pid: only a process started with our conf counts
  [ -n "$p" ] && grep -qaF -- "$CONF" "/proc/$p/cmdline" 2>/dev/null && echo "$p"
  return 0
}

daemons() { # every daemon of the cluster in DIR, stop order (OSDs first so they tell the mon)
  local d
  for d in "$DIR"/osd.*; do [ -d "$d" ] && echo "osd.${d##*/osd.}"; done
  echo mgr.x
  echo mon.a
}

# Start a daemon: it forks into the background once initialised; its early stderr chatter
# goes to the log dir. Bounded, since initialising waits on the mon.
daemon() { timeout -k 2 120 "$@" 2>>"$DIR/log/daemon-start.log"; }

port_busy() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

wait_for() { # wait_for <deadline µs> <what> <command...>
  local deadline=$1 what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    (( ${EPOCHREALTIME/./} < deadline )) || { log "timed out waiting for $what"; return 1; }
    sleep 0.3
  done
  log "ok: $what"
}

osds_up() {
  c osd stat -f json | $PY -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["num_osds"] > 0 and d["num_up_osds"] == d["num_osds"] and d["num_in_osds"] == d["num_osds"] else 1)'
}
mgr_available() {
  c mgr stat -f json | $PY -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["available"] else 1)'
}
# HEALTH_OK can show while the mgr still reports PGs as unknown: only all-active+clean means ready.
pgs_clean() {
  c pg stat -f json | $PY -c '
import json,sys
s=json.load(sys.stdin)["pg_summary"]
n=s.get("num_pgs",0)
ok=sum(x["num"] for x in s.get("num_pg_by_state",[]) if x["name"]=="active+clean")
sys.exit(0 if n>='"$PG_NUM"' and ok==n else 1)'
}

stop_daemons() {
  # OSDs first and alone (they tell the mon they go down, and memstore saves its data); then
  # mgr and mon together, which only need to exit.
  local osds=() n
  for n in $(daemons); do case $n in osd.*) osds+=("$n") ;; esac; done
  [ ${#osds[@]} -eq 0 ] || stop_group "${osds[@]}"
  stop_group mgr.x mon.a
}

stop_group() { # stop_group <name>...: TERM all, wait up to 15 s, then KILL the stragglers
  local n p alive pids=() names=()
  for n in "$@"; do
    p=$(pid_of "$n")
    [ -n "$p" ] || continue
    kill -TERM "$p" 2>/dev/null || true
    pids+=("$p"); names+=("$n")
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  for _ in $(seq 1 150); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 1 ] || break
    sleep 0.1
  done
  for p in "${pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then log "pid $p ignored TERM for 15 s: KILL"; kill -KILL "$p" 2>/dev/null || true; fi
  done
  for n in "${names[@]}"; do rm -f "$DIR/run/$n.pid"; done
  log "stopped ${names[*]}"
}

kill_daemons() { # for a cluster about to be deleted: no graceful shutdown needed
  local n p pids=()
  [ -d "$DIR/run" ] || return 0
  for n in $(daemons); do
    p=$(pid_of "$n")
    [ -n "$p" ] && { kill -KILL "$p" 2>/dev/null || true; pids+=("$p"); }
    rm -f "$DIR/run/$n.pid"
  done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
}

write_conf() { # write_conf <fsid> <port>
  local fsid=$1 port=$2
  cat > "$CONF" <<EOF
# Written by scripts/ceph.sh: a single-host test cluster, one replica, no redundancy.
[global]
fsid = $fsid
mon host = [v2:$ADDR:$port,v1:$ADDR:$((port + 1))]
public addr = $ADDR
cluster addr = $ADDR
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = $DIR/run
crash dir = $DIR/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = $PG_NUM
osd pool default pgp num = $PG_NUM
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
auth allow insecure global id reclaim = false
mon data avail warn = 2
mon data avail crit = 1
mon max pg per osd = 1000
mgr initial modules = iostat
mgr stats period = 1
osd objectstore = $OBJECTSTORE

[client]
keyring = $DIR/keyring
log file = $DIR/log/client.log

[mon]
pid file = $DIR/run/\$name.pid
mon data = $DIR/mon.\$id
log file = $DIR/log/\$name.log
mon cluster log file = $DIR/log/cluster.log

[mgr]
pid file = $DIR/run/\$name.pid
mgr data = $DIR/mgr.\$id
mgr module path = $DIR/mgr-modules
log file = $DIR/log/\$name.log

[osd]
pid file = $DIR/run/\$name.pid
osd data = $DIR/osd.\$id
log file = $DIR/log/\$name.log
osd memory target = 939524096
# memstore writes its contents to the data dir only on a full (not fast) shutdown
osd fast shutdown = false
memstore device bytes = 4294967296
bluestore block create = true
bluestore block size = 21474836480
bluestore fsck on mkfs = false
bluestore fsck on mount = false
bluestore cache autotune = false
bluestore cache size = 134217728
osd op num shards = 1
osd op num threads per shard = 2
EOF
}

bootstrap() {
  local port=${CEPH_MON_PORT:-13300} fsid uuid secret id
  if [ -d "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then
    [ -f "$MARK" ] || die "$DIR is not empty and not a scripts/ceph.sh cluster: refusing to wipe it"
    kill_daemons
    rm -rf "$DIR"
  fi
  port_busy "$port" && die "mon port $port is in use: pick another with CEPH_MON_PORT"
  port_busy $((port + 1)) && die "mon port $((port + 1)) (msgr1) is in use: pick another with CEPH_MON_PORT"
  mkdir -p "$DIR"/{run,log,crash,mon.a,mgr.x,mgr-modules}
  : > "$MARK"
  # The mgr imports every Python module on its path at start (seconds each on a busy host):
  # give it only the always-on ones (missing ones are a health error) and iostat.
  local m
  for m in mgr_module.py mgr_util.py balancer crash devicehealth iostat orchestrator pg_autoscaler \
           progress rbd_support status telemetry volumes; do
    [ -e "$MGR_MODULES/$m" ] || die "ceph-mgr module $MGR_MODULES/$m is missing (install ceph-mgr 16)"
    ln -s "$MGR_MODULES/$m" "$DIR/mgr-modules/$m"
  done
  fsid=$(cat /proc/sys/kernel/random/uuid)
  write_conf "$fsid" "$port"
  log "bootstrap in $DIR ($OBJECTSTORE, mon ports $port/$((port + 1)))"

  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:$ADDR:$port,v1:$ADDR:$((port + 1))]" \
    --clobber "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
  daemon ceph-mon -c "$CONF" -i a
  wait_for "$DEADLINE" "mon quorum" c mon stat

  c auth get-or-create mgr.x mon 'allow profile mgr' mds 'allow *' osd 'allow *' -o "$DIR/mgr.x/keyring"
  daemon ceph-mgr -c "$CONF" -i x

  # The pool needs only the mon: create it before the OSD boots, so the PGs are created and
  # peered as soon as it is up. (`rbd pool init` would write to the pool and so wait for that.)
  c osd pool create "$POOL" "$PG_NUM" "$PG_NUM" >/dev/null
  c osd pool application enable "$POOL" rbd >/dev/null
  log "pool $POOL created"

  uuid=$(cat /proc/sys/kernel/random/uuid)
  secret=$(ceph-authtool --gen-print-key)
  printf '{"cephx_secret": "%s"}\n' "$secret" > "$DIR/osd-new.json"
  id=$(c osd new "$uuid" -i "$DIR/osd-new.json")
  rm -f "$DIR/osd-new.json"
  mkdir -p "$DIR/osd.$id"
  printf '[osd.%s]\n\tkey = %s\n' "$id" "$secret" > "$DIR/osd.$id/keyring"
  timeout -k 2 120 ceph-osd -c "$CONF" -i "$id" --mkfs --key "$secret" --osd-uuid "$uuid" > "$DIR/log/osd.$id.mkfs.log" 2>&1 \
    || die "osd mkfs failed: see $DIR/log/osd.$id.mkfs.log"
  daemon ceph-osd -c "$CONF" -i "$id"
  wait_for "$DEADLINE" "osd.$id up" osds_up
  : > "$READY"
}

start_daemons() {
  local port id d
  port=$(mon_port)
  [ -n "$(pid_of mon.a)" ] || {
    port_busy "$port" && die "mon port $port is in use by another process"
    daemon ceph-mon -c "$CONF" -i a
  }
  wait_for "$DEADLINE" "mon quorum" c mon stat
  [ -n "$(pid_of mgr.x)" ] || daemon ceph-mgr -c "$CONF" -i x
  for d in "$DIR"/osd.*; do
    [ -d "$d" ] || continue
    id=${d##*/osd.}
    [ -n "$(pid_of "osd.$id")" ] || daemon ceph-osd -c "$CONF" -i "$id"
  done
  wait_for "$DEADLINE" "osds up" osds_up
}

all_running() { local n; for n in $(daemons); do [ -n "$(pid_of "$n")" ] || return 1; done; }

up() {
  DEADLINE=$(( ${EPOCHREALTIME/./} + UP_TIMEOUT * 1000000 ))
  if [ -f "$READY" ]; then
    if [ -n "${CEPH_MON_PORT:-}" ] && [ "$CEPH_MON_PORT" != "$(mon_port)" ]; then
      log "note: the cluster in $DIR keeps its mon port $(mon_port) (CEPH_MON_PORT=$CEPH_MON_PORT ignored; purge to change it)"
    fi
    if all_running && pgs_clean; then log "already up in $DIR (mon port $(mon_port))"; return 0; fi
    log "restarting the cluster in $DIR"
    start_daemons
  else
    bootstrap
  fi
  wait_for "$DEADLINE" "mgr available" mgr_available
  wait_for "$DEADLINE" "all PGs active+clean" pgs_clean
  log "ceph up in $(elapsed) s (mon port $(mon_port), conf $CONF)"
}

status() {
  local n p rc=0
  [ -f "$READY" ] || { echo "no cluster in $DIR"; return 1; }
  for n in $(daemons); do
    p=$(pid_of "$n")
    if [ -n "$p" ]; then echo "$n running (pid $p)"; else echo "$n stopped"; rc=1; fi
  done
  echo "mon port $(mon_port), conf $CONF"
  if [ -n "$(pid_of mon.a)" ]; then c -s || rc=1; pgs_clean || rc=1; fi
  return $rc
}

case "$CMD" in
  up) up ;;
  down) stop_daemons; log "down ($DIR)" ;;
  status) status ;;
  env) echo "export CEPH_CONF=$CONF" ;;
  purge)
    if [ -d "$DIR" ]; then
      [ -f "$MARK" ] || die "$DIR is not a scripts/ceph.sh cluster: refusing to delete it"
      kill_daemons; rm -rf "$DIR"; log "purged $DIR"
    fi ;;
  *) echo "usage: $0 up|down|status|env|purge [DIR]" >&2; exit 2 ;;
esac
