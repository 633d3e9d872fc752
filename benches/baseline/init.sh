#!/bin/sh
# BENCHMARK FIXTURE, never in a kiOS image: the conventional shell-script
# init `cargo kios bench` compares the kiOS init with. `build_node_image`
# puts it at /bin/init, with Debian's static busybox at /bin/busybox and
# /bin/sh -> busybox, only when `ImageOptions::baseline_init` is set.
#
# It does the kiOS init's steps (init/src/boot.rs, init/src/mounts.rs) the
# way a shell init does them: the root becomes pivot_root-able by copying
# the initramfs into a tmpfs and `switch_root`ing into it (stage 2 is this
# script again), the runtime's socket is polled with sleep, services run
# in the background and the script `wait`s.
#
# It prints the kiOS init's timeline markers (`kios: timeline <phase>
# us=<µs since boot>`), so the host reads both inits the same way; the
# times come from /proc/uptime, so they have 10 ms resolution.

export PATH=/bin HOME=/

say() {
    echo "<5>kios-baseline: $*" > /dev/kmsg
}

# µs since boot, from /proc/uptime ("12.34 ..."); the leading 1 keeps a
# fraction like "05" from being read as octal.
uptime_us() {
    read -r uptime _ < /proc/uptime
    echo $(( ${uptime%.*} * 1000000 + (1${uptime#*.} - 100) * 10000 ))
}

timeline() {
    echo "<5>kios: timeline $1 us=$2" > /dev/kmsg
}

load_modules() {
    [ -r "$1" ] || return 0
    while read -r module; do
        case "$module" in '' | '#'*) continue ;; esac
        insmod "$module" || say "loading module $module failed"
    done < "$1"
}

if [ "$1" != stage2 ]; then
    # Stage 1, on the initramfs (rootfs cannot be pivot_root'ed, runc needs that).
    mount -t proc -o nosuid,nodev,noexec proc /proc
    pid1_us=$(uptime_us)
    mount -t devtmpfs -o nosuid,noexec,mode=0755 devtmpfs /dev
    timeline pid1 "$pid1_us"
    say "shell-script init (benchmark fixture), copying the root into a tmpfs"
    mkdir -p /newroot
    mount -t tmpfs -o mode=0755 tmpfs /newroot
    for entry in /*; do
        case "$entry" in /newroot | /dev | /proc) continue ;; esac
        cp -a "$entry" /newroot/
    done
    mkdir -p /newroot/dev /newroot/proc
    mount --move /dev /newroot/dev
    mount --move /proc /newroot/proc
    # busybox switch_root refuses unless /init is a regular file (its guard
    # against emptying a disk root by mistake); the image has /bin/init.
    : > /init
    exec switch_root /newroot /bin/init stage2
fi

# Stage 2, on the tmpfs copy, /dev and /proc carried over.
mount -o remount,ro /
echo on > /proc/sys/kernel/printk_devkmsg 2> /dev/null
# Like the kiOS init, keep containerd's and the kubelet's output off the
# console: their unprefixed writes to /dev/kmsg get the default message
# level, set here to debug (kios_abi::console), below a quiet console.
read -r console_level _ < /proc/sys/kernel/printk
echo "$console_level 7" > /proc/sys/kernel/printk
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t securityfs -o nosuid,nodev,noexec securityfs /sys/kernel/security
mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate cgroup2 /sys/fs/cgroup
mkdir -p /dev/pts /dev/shm
mount -t devpts -o nosuid,noexec,newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,noexec,mode=1777 tmpfs /dev/shm
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
mount --make-rshared /
# The modules first: the data partition's driver may be one. The bench
# boots without a disk, so /var is a tmpfs, as the kiOS init makes it then.
load_modules /etc/kios/modules
mount -t tmpfs -o mode=0755 tmpfs /var
mkdir -p -m 0755 /var/lib /var/log /var/log/pods
mkdir -p -m 0711 /var/lib/containerd /var/lib/containerd-snapshots /run/containerd
mkdir -p -m 0700 /var/lib/kubelet /var/lib/kios/etc/work
mkdir -p -m 0755 /var/lib/kios/etc/upper
mount -t overlay -o nosuid,nodev,lowerdir=/etc,upperdir=/var/lib/kios/etc/upper,workdir=/var/lib/kios/etc/work overlay /etc
if [ -d /usr/lib/kios/containerd ]; then
    mkdir -p -m 0700 /var/lib/.containerd /var/lib/.containerd/work
    mkdir -p -m 0711 /var/lib/.containerd/upper
    mount -t overlay -o lowerdir=/usr/lib/kios/containerd,upperdir=/var/lib/.containerd/upper,workdir=/var/lib/.containerd/work overlay /var/lib/containerd
fi
timeline mounts_done "$(uptime_us)"

hostname -F /etc/hostname || hostname kios
ip link set lo up
echo 1 > /proc/sys/net/ipv4/ip_forward
echo 1 > /proc/sys/net/ipv6/conf/all/forwarding 2> /dev/null

# The probe pod asks for shutdown with SIGTERM to PID 1.
trap 'say "shutdown requested by signal"; kill $kubelet_pid $containerd_pid; sync; poweroff -f' TERM

timeline runtime_exec "$(uptime_us)"
containerd > /dev/kmsg 2>&1 &
containerd_pid=$!
tries=0
while [ ! -S /run/containerd/containerd.sock ] && [ "$tries" -lt 600 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
if [ -S /run/containerd/containerd.sock ]; then
    timeline runtime_ready "$(uptime_us)"
else
    say "containerd's socket did not appear within 60 s, starting the kubelet anyway"
fi

# The flags the kiOS init computes for this image (init/src/kubelet.rs):
# a kubelet config, no kubeconfig (standalone), no credential providers,
# node IP or labels.
timeline kubelet_exec "$(uptime_us)"
kubelet --container-runtime=remote \
    --container-runtime-endpoint=unix:///run/containerd/containerd.sock \
    --config=/etc/kubernetes/kubelet-config.yaml > /dev/kmsg 2>&1 &
kubelet_pid=$!
load_modules /etc/kios/modules-late

# `wait` returns when a trapped signal arrives (the trap then runs) or
# when no child is left; sleep keeps the latter from spinning.
while :; do
    wait
    sleep 1
done
