#!/usr/bin/env bash
# Builds the tiny guest: a busybox initramfs for the Debian cloud kernel, whose
# virtio drivers are modules and so must travel in the initramfs.
#
# Usage: scripts/build-tiny-guest.sh [OUTDIR]   (default: .guest in the repo)
# Output: OUTDIR/tiny-guest.cpio.gz, OUTDIR/vmlinuz (symlink to the kernel),
#         OUTDIR/tiny-guest.json (paths and kernel version, read by node/qemu).
# Idempotent: skips the build when the stamp (this script, kernel, busybox) matches.
#
# The guest's kernel command line understands:
#   blix.hostname=NAME      hostname (default blixard-guest)
#   blix.ip=ADDR/PFX        address of eth0      blix.gw=GW   default route
#   blix.disk=1             mount /dev/vda at /data (mke2fs when blank), count boots in it, and
#                           run the disk writer (below)
#   blix.host=NAME          the name of the host running the guest (the disk writer's records)
#   blix.vlan=ID            tag: the address goes on eth0.ID (802.1Q inside the guest)
#   blix.ping=IP[,IP..]     after the ready marker, ping each IP (20 tries, 20-40 s) and report it
#   blix.pingloop=IP        after the ready marker, ping IP without end, one try every 200 ms (1 s
#                           timeout), and print each reply: a test sees when traffic stops and resumes
# Serial console lines it prints:
#   BLIXARD-DISK <hostname> boots=N          (with blix.disk=1, before the ready marker)
#   BLIXARD-WRITER <host> region=R from=N    (the disk writer started) | BLIXARD-WRITER <host> error=WHY
# The disk writer (for HA: a VM never runs on two hosts at once, judged on its disk): the
# filesystem takes the disk's first 64 MiB; from sector W_BASE (128 MiB) the raw disk holds a log of
# 512-byte records "BLXW <counter> <host> <boot id>", one region of W_REG records per boot. At boot
# the writer takes the first empty region, reads the last counter of the region before, and from
# then on writes counter+1 every 100 ms (fsync'd). A writer still alive on a fenced host keeps
# writing its own region with counters the new one also uses: the judge (node/qemu/disk-writer-log.ts,
# which holds the same constants) sees the counter go backwards between regions.
#   BLIXARD-GUEST-UP <hostname> <ip|none> uptime=S eth0=MAC disks=[..]
#   BLIXARD-GUEST-POWEROFF                   (ACPI power button, then poweroff -f)
#   BLIXARD-PING <ip> ok received=N | BLIXARD-PING <ip> fail   (with blix.ping=)
#   BLIXARD-PONG <ip> <try>                  (with blix.pingloop=: try N of the loop had a reply)
#   BLIXARD-IDENTITY <hostname> <ip|none> eth0=MAC   (after a blix-identity console line, below)
# Console lines it reads (the host types them into the serial socket):
#   blix-identity NAME IP/PFX|none GW|none MAC|none  a guest resumed from another VM's memory snapshot
#                           (a clone) takes its own identity without a reboot: hostname, eth0's MAC
#                           (virtio-net passes it to the device), address and default route
#   poweroff | any other line: run by sh (debugging a guest by hand)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${1:-$ROOT/.guest}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
OUT=$OUTDIR/tiny-guest.cpio.gz

KERNEL=${BLIXARD_GUEST_KERNEL:-$(ls -1 /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -1 || true)}
if [ -z "$KERNEL" ] || [ ! -f "$KERNEL" ]; then
  echo "build-tiny-guest: no Debian cloud kernel in /boot (install linux-image-cloud-amd64: scripts/setup.sh)" >&2
  exit 2
fi
KVER=${KERNEL#*/vmlinuz-}
if [ ! -d /lib/modules/$KVER ]; then
  echo "build-tiny-guest: /lib/modules/$KVER missing for $KERNEL" >&2
  exit 2
fi
# busybox-static installs /bin/busybox; a dynamic busybox would not run in the guest
BUSYBOX=${BLIXARD_BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || { echo "build-tiny-guest: busybox missing (install busybox-static)" >&2; exit 2; }

STAMP=$( { sha256sum "$0" "$BUSYBOX" | cut -d' ' -f1; echo "$KVER"; } | sha256sum | cut -d' ' -f1)
if [ -f "$OUT" ] && [ -f "$OUTDIR/tiny-guest.stamp" ] && [ "$(cat "$OUTDIR/tiny-guest.stamp")" = "$STAMP" ] \
   && [ "$(readlink "$OUTDIR/vmlinuz")" = "$KERNEL" ]; then
  echo "build-tiny-guest: up to date: $OUT (kernel $KVER)"
  exit 0
fi

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
chmod 755 "$W"
mkdir -p "$W"/{bin,sbin,dev,proc,sys,tmp,etc,mnt,data,lib/modules,usr/bin,usr/sbin,run}
cp "$BUSYBOX" "$W/bin/busybox"
for a in $("$W/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf /bin/busybox "$W/bin/$a"; done

# Modules in dependency order: a module's dependencies are added before it.
WANT="virtio virtio_ring virtio_mmio virtio_blk virtio_net button evdev 8021q"
declare -A SEEN
ORDER=()
add() {
  local m=$1 f d x
  [[ -n ${SEEN[$m]:-} ]] && return 0
  SEEN[$m]=1
  f=$(modinfo -k "$KVER" -n "$m" 2>/dev/null) || return 0
  [[ $f == builtin* || $f == "(builtin)" ]] && return 0
  d=$(modinfo -k "$KVER" -F depends "$m" | tr ',' ' ')
  for x in $d; do add "$x"; done
  cp "$f" "$W/lib/modules/"
  ORDER+=("$(basename "$f")")
}
for m in $WANT; do add "$m"; done
printf '%s\n' "${ORDER[@]}" > "$W/lib/modules/order"

# busybox acpid: the microvm power button (ACPI GED, event PWRF) runs this.
mkdir -p "$W/etc/acpi/PWRF"
printf '#!/bin/sh\nexec /sbin/guest-poweroff\n' > "$W/etc/acpi/PWRF/00000080"
chmod +x "$W/etc/acpi/PWRF/00000080"
cat > "$W/sbin/guest-poweroff" <<'A'
#!/bin/sh
echo "BLIXARD-GUEST-POWEROFF" > /dev/console
sync
umount /data 2>/dev/null
poweroff -f
A
chmod +x "$W/sbin/guest-poweroff"
cat > "$W/sbin/blix-identity" <<'A'
#!/bin/sh
# blix-identity NAME IP/PFX|none GW|none MAC|none
NAME=$1; IP=$2; GW=$3; NEWMAC=$4
hostname "$NAME"
DEV=eth0
for d in /sys/class/net/eth0.*; do [ -e "$d" ] && DEV=${d##*/}; done
if [ -e /sys/class/net/eth0 ]; then
  [ "$NEWMAC" != none ] && ip link set eth0 address "$NEWMAC"
  ip addr flush dev $DEV
  [ "$IP" != none ] && ip addr add "$IP" dev $DEV
  [ "$GW" != none ] && ip route replace default via "$GW"
  MAC=$(cat /sys/class/net/eth0/address)
else MAC=absent; fi
ADDR=${IP%/*}; [ "$IP" = none ] && ADDR=none
echo "BLIXARD-IDENTITY $NAME $ADDR eth0=$MAC" > /dev/console
A
chmod +x "$W/sbin/blix-identity"

cat > "$W/init" <<'A'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m 2>/dev/null; done
CON=/dev/console
NAME=blixard-guest; IP=; GW=; DISK=; VLAN=; PING=; PINGLOOP=; HOST=unknown
for a in $(cat /proc/cmdline); do
  case $a in
    blix.hostname=*) NAME=${a#blix.hostname=};;
    blix.ip=*) IP=${a#blix.ip=};;
    blix.gw=*) GW=${a#blix.gw=};;
    blix.disk=*) DISK=${a#blix.disk=};;
    blix.host=*) HOST=${a#blix.host=};;
    blix.vlan=*) VLAN=${a#blix.vlan=};;
    blix.ping=*) PING=${a#blix.ping=};;
    blix.heartbeat=*) HB=${a#blix.heartbeat=};;
    blix.pingloop=*) PINGLOOP=${a#blix.pingloop=};;
  esac
done
hostname "$NAME"
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  DEV=eth0
  if [ -n "$VLAN" ]; then
    ip link add link eth0 name eth0.$VLAN type vlan id $VLAN && ip link set eth0.$VLAN up && DEV=eth0.$VLAN
  fi
  [ -n "$IP" ] && ip addr add "$IP" dev $DEV
  [ -n "$GW" ] && ip route add default via "$GW"
  MAC=$(cat /sys/class/net/eth0/address)
else MAC=absent; fi
W_BASE=262144; W_REG=8192; W_MAX=64
wrec() { dd if=/dev/vda bs=512 skip=$1 count=1 2>/dev/null | tr -d '\000' | head -n 1; }
writer() {
  SZ=$(cat /sys/block/vda/size 2>/dev/null || echo 0)
  [ "$SZ" -ge $((W_BASE + W_REG * W_MAX)) ] || { echo "BLIXARD-WRITER $HOST error=disk-too-small" > $CON; return; }
  BOOT=$(cut -c1-8 /proc/sys/kernel/random/boot_id)
  r=0
  while [ $r -lt $W_MAX ]; do case "$(wrec $((W_BASE + r * W_REG)))" in BLXW*) r=$((r + 1));; *) break;; esac; done
  [ $r -lt $W_MAX ] || { echo "BLIXARD-WRITER $HOST error=log-full" > $CON; return; }
  N=0
  if [ $r -gt 0 ]; then
    # the region before is contiguous from its start: binary search for its last record
    P=$((W_BASE + (r - 1) * W_REG)); lo=0; hi=$W_REG
    while [ $((hi - lo)) -gt 1 ]; do m=$(((lo + hi) / 2)); case "$(wrec $((P + m)))" in BLXW*) lo=$m;; *) hi=$m;; esac; done
    set -- $(wrec $((P + lo))); N=$2
  fi
  echo "BLIXARD-WRITER $HOST region=$r from=$((N + 1))" > $CON
  S=$((W_BASE + r * W_REG)); i=0
  while [ $i -lt $W_REG ]; do
    N=$((N + 1))
    echo "BLXW $N $HOST $BOOT" | dd of=/dev/vda bs=512 seek=$((S + i)) count=1 conv=sync,notrunc,fsync 2>/dev/null
    i=$((i + 1)); usleep 100000
  done
  echo "BLIXARD-WRITER $HOST error=region-full" > $CON
}
if [ "$DISK" = 1 ]; then
  # a blank disk gets a filesystem once; the boot counter shows data survived
  if [ -b /dev/vda ]; then
    # 64 MiB of filesystem (the disk writer's log lives after it, at W_BASE), or the whole disk
    # when it is smaller (mke2fs refuses a filesystem larger than its device)
    FSK=$(( $(cat /sys/block/vda/size 2>/dev/null || echo 0) / 2 )); [ "$FSK" -gt 65536 ] && FSK=65536
    mount -t ext4 /dev/vda /data 2>/dev/null || { mke2fs -q -b 1024 /dev/vda $FSK >/dev/null 2>&1 && mount -t ext4 /dev/vda /data; }
  fi
  if grep -q " /data " /proc/mounts; then
    N=$(cat /data/blixard-boots 2>/dev/null || echo 0); N=$((N + 1))
    echo $N > /data/blixard-boots; sync
    echo "BLIXARD-DISK $NAME boots=$N" > $CON
  else echo "BLIXARD-DISK $NAME error=no-disk" > $CON; fi
  [ -b /dev/vda ] && writer &
fi
# acpid before the marker: a power-button press before it listens is lost,
# and "ready" must mean "a graceful stop will work"
acpid -d -c /etc/acpi > $CON 2>&1 &   # -d: stay in the foreground (daemon mode wants /var/log)
A=$!; i=0
while [ $i -lt 100 ] && ! ls -l /proc/$A/fd 2>/dev/null | grep -q /dev/input/event; do usleep 20000; i=$((i + 1)); done
DISKS=$(ls /sys/block 2>/dev/null | tr '\n' ' ')
ADDR=${IP%/*}
echo "BLIXARD-GUEST-UP $NAME ${ADDR:-none} uptime=$(cut -d' ' -f1 /proc/uptime) eth0=$MAC disks=[${DISKS% }]" > $CON
# heartbeat (blix.heartbeat=MS): a counter on the console, so a test sees the guest kept running across a migration
if [ -n "$HB" ]; then
  ( n=0; while true; do n=$((n + 1)); echo "BLIXARD-HEARTBEAT $n" > $CON; usleep $((HB * 1000)); done ) &
fi
# ping peers in the background: they may still be booting, so retry for 20 tries (20-40 s)
for P in $(echo "$PING" | tr ',' ' '); do
  ( i=0; while [ $i -lt 20 ]; do
      if ping -c 1 -W 1 "$P" >/dev/null 2>&1; then
        R=$(ping -c 3 -W 2 "$P" 2>/dev/null | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
        echo "BLIXARD-PING $P ok received=${R:-0}" > $CON; exit 0
      fi
      i=$((i + 1)); sleep 1
    done
    echo "BLIXARD-PING $P fail" > $CON ) &
done
# ping one peer without end (blix.pingloop=IP): each reply on the console, numbered by try
if [ -n "$PINGLOOP" ]; then
  ( n=0; while true; do n=$((n + 1))
      ping -c 1 -W 1 "$PINGLOOP" >/dev/null 2>&1 && echo "BLIXARD-PONG $PINGLOOP $n" > $CON
      usleep 200000; done ) &
fi
# console command loop: 'poweroff' or any shell command (for debugging a guest by hand)
while true; do
  read -r line < $CON || { sleep 3600; continue; }
  case "$line" in
    poweroff) /sbin/guest-poweroff;;
    "blix-identity "*) set -- $line; /sbin/blix-identity "$2" "$3" "$4" "$5";;
    "") ;;
    *) sh -c "$line" > $CON 2>&1; echo "BLIXARD-CMD-DONE rc=$?" > $CON;;
  esac
done
A
chmod +x "$W/init"

(cd "$W" && find . -print0 | sort -z | cpio --null -o -H newc --quiet | gzip -9n) > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
ln -sfn "$KERNEL" "$OUTDIR/vmlinuz"
cat > "$OUTDIR/tiny-guest.json" <<J
{ "kernel": "$KERNEL", "kernelVersion": "$KVER", "initrd": "$OUT" }
J
echo "$STAMP" > "$OUTDIR/tiny-guest.stamp"
echo "build-tiny-guest: built $OUT ($(stat -c %s "$OUT") bytes) kernel $KVER modules: ${ORDER[*]}"
