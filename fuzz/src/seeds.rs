//! The seed corpora (`fuzz/corpus/<target>/`), built here so each seed
//! says what it is: realistic inputs of every parser, from the docs, the
//! shipped files and real clients' bytes. `cargo test --manifest-path
//! fuzz/Cargo.toml` checks the committed files match;
//! `KIOS_FUZZ_WRITE_SEEDS=1` (re)writes them.

use crate::SECTION;

/// Wire bytes of the kubelet's calls as godbus v5.0.3 encodes them, the
/// same captures as the init's bus tests (`init/src/bus/fixtures.rs`).
const GODBUS_HELLO: &str = "6c01000100000000010000006e00000006017300140000006f72672e667265656465736b746f702e4442757300000000030173000500000048656c6c6f00000002017300140000006f72672e667265656465736b746f702e444275730000000001016f00150000002f6f72672f667265656465736b746f702f44427573000000";
const GODBUS_GET: &str = "6c0100013c000000020000008000000001016f00170000002f6f72672f667265656465736b746f702f6c6f67696e310006017300160000006f72672e667265656465736b746f702e6c6f67696e31000003017300030000004765740000000000020173001f0000006f72672e667265656465736b746f702e444275732e50726f706572746965730008016700027373001e0000006f72672e667265656465736b746f702e6c6f67696e312e4d616e61676572000013000000496e686962697444656c61794d61785553656300";
const GODBUS_INHIBIT: &str = "6c01000156000000030000008800000006017300160000006f72672e667265656465736b746f702e6c6f67696e3100000301730007000000496e686962697400020173001e0000006f72672e667265656465736b746f702e6c6f67696e312e4d616e6167657200000801670004737373730000000000000001016f00170000002f6f72672f667265656465736b746f702f6c6f67696e31000800000073687574646f776e00000000070000006b7562656c6574002a0000004b7562656c6574206e656564732074696d6520746f2068616e646c65206e6f64652073687574646f776e00000500000064656c617900";
const GODBUS_ADD_MATCH: &str = "6c01000178000000040000007e00000006017300140000006f72672e667265656465736b746f702e444275730000000003017300080000004164644d61746368000000000000000002017300140000006f72672e667265656465736b746f702e4442757300000000080167000173000001016f00150000002f6f72672f667265656465736b746f702f4442757300000073000000747970653d277369676e616c272c696e746572666163653d276f72672e667265656465736b746f702e6c6f67696e312e4d616e61676572272c6d656d6265723d2750726570617265466f7253687574646f776e272c706174683d272f6f72672f667265656465736b746f702f6c6f67696e312700";
const GODBUS_KILL_UNIT: &str = "6c0100012800000003000000a100000001016f00190000002f6f72672f667265656465736b746f702f73797374656d64310000000000000006017300180000006f72672e667265656465736b746f702e73797374656d6431000000000000000003017300080000004b696c6c556e6974000000000000000002017300200000006f72672e667265656465736b746f702e73797374656d64312e4d616e616765720000000000000000080167000373736900000000000000001600000073797374656d642d6c6f67696e642e73657276696365000003000000616c6c0001000000";
const GODBUS_GET_BIG_ENDIAN: &str = "420100010000003c000000020000007f03017300000000034765740000000000020173000000001f6f72672e667265656465736b746f702e444275732e50726f7065727469657300080167000273730001016f00000000172f6f72672f667265656465736b746f702f6c6f67696e310006017300000000166f72672e667265656465736b746f702e6c6f67696e3100000000001e6f72672e667265656465736b746f702e6c6f67696e312e4d616e61676572000000000013496e686962697444656c61794d61785553656300";
/// libdbus's Hello, and dbus-daemon's reply to one (raw off a socket).
const LIBDBUS_HELLO: &[u8] = b"l\x01\x00\x01\x00\x00\x00\x00\x01\x00\x00\x00n\x00\x00\x00\x01\x01o\x00\x15\x00\x00\x00/org/freedesktop/DBus\x00\x00\x00\x06\x01s\x00\x14\x00\x00\x00org.freedesktop.DBus\x00\x00\x00\x00\x02\x01s\x00\x14\x00\x00\x00org.freedesktop.DBus\x00\x00\x00\x00\x03\x01s\x00\x05\x00\x00\x00Hello\x00\x00\x00";
const DAEMON_HELLO_REPLY: &[u8] = b"l\x02\x01\x01\x0c\x00\x00\x00\xff\xff\xff\xff?\x00\x00\x00\x05\x01u\x00\x01\x00\x00\x00\x07\x01s\x00\x14\x00\x00\x00org.freedesktop.DBus\x00\x00\x00\x00\x06\x01s\x00\x07\x00\x00\x00:1.2072\x00\x08\x01g\x00\x01s\x00\x00\x07\x00\x00\x00:1.2072\x00";
/// godbus's authentication as root.
const GODBUS_AUTH: &[u8] = b"\0AUTH\r\nAUTH EXTERNAL 30\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Files joined with [`SECTION`], for the targets that take several.
fn files(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(SECTION)
}

/// CRC-32 (IEEE), GPT's checksum.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// A disk as `cargo kios build --disk` lays it out, shortened: a
/// protective MBR, the GPT header at LBA 1 and `count` 128-byte entries
/// from LBA 2: the ESP, then the kiOS data partition.
fn gpt_disk(sector: usize, count: u32) -> Vec<u8> {
    const ESP: [u8; 16] = [
        0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9,
        0x3b,
    ];
    let mut entries = vec![0u8; count as usize * 128];
    for (index, (guid, first, last, name)) in [
        (ESP, 2048u64, 206_847u64, "esp"),
        (
            kios_abi::data_partition::TYPE_GPT_BYTES,
            206_848,
            2_303_999,
            "kios-data",
        ),
    ]
    .into_iter()
    .enumerate()
    .take(count as usize)
    {
        let entry = &mut entries[index * 128..(index + 1) * 128];
        entry[..16].copy_from_slice(&guid);
        entry[16..32].copy_from_slice(&[index as u8 + 1; 16]);
        entry[32..40].copy_from_slice(&first.to_le_bytes());
        entry[40..48].copy_from_slice(&last.to_le_bytes());
        for (at, unit) in name.encode_utf16().enumerate() {
            entry[56 + 2 * at..58 + 2 * at].copy_from_slice(&unit.to_le_bytes());
        }
    }
    let mut header = vec![0u8; sector];
    header[..8].copy_from_slice(b"EFI PART");
    header[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    header[12..16].copy_from_slice(&92u32.to_le_bytes());
    header[24..32].copy_from_slice(&1u64.to_le_bytes());
    header[32..40].copy_from_slice(&2_306_047u64.to_le_bytes());
    header[40..48].copy_from_slice(&34u64.to_le_bytes());
    header[48..56].copy_from_slice(&2_306_014u64.to_le_bytes());
    header[56..72].copy_from_slice(&[0x42; 16]);
    header[72..80].copy_from_slice(&2u64.to_le_bytes());
    header[80..84].copy_from_slice(&count.to_le_bytes());
    header[84..88].copy_from_slice(&128u32.to_le_bytes());
    header[88..92].copy_from_slice(&crc32(&entries).to_le_bytes());
    let crc = crc32(&header[..92]);
    header[16..20].copy_from_slice(&crc.to_le_bytes());
    let mut mbr = vec![0u8; sector];
    mbr[446 + 4] = 0xee;
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    cat(&[&mbr, &header, &entries])
}

/// The first 2 KiB of an ext4 partition: its superblock's magic.
fn ext4_start() -> Vec<u8> {
    let mut bytes = vec![0u8; 2048];
    bytes[1024 + 0x38] = 0x53;
    bytes[1024 + 0x39] = 0xef;
    bytes
}

/// A `struct input_event` (64-bit kernel).
fn input_event(kind: u16, code: u16, value: i32) -> Vec<u8> {
    let mut event = Vec::with_capacity(24);
    event.extend_from_slice(&1_700_000_000u64.to_ne_bytes());
    event.extend_from_slice(&123_456u64.to_ne_bytes());
    event.extend_from_slice(&kind.to_ne_bytes());
    event.extend_from_slice(&code.to_ne_bytes());
    event.extend_from_slice(&value.to_ne_bytes());
    event
}

/// A netlink reply: NLMSG_ERROR carrying `error`, then the request's header.
fn netlink_ack(error: i32) -> Vec<u8> {
    let mut reply = Vec::new();
    reply.extend_from_slice(&36u32.to_ne_bytes());
    reply.extend_from_slice(&2u16.to_ne_bytes());
    reply.extend_from_slice(&0u16.to_ne_bytes());
    reply.extend_from_slice(&1u32.to_ne_bytes());
    reply.extend_from_slice(&0u32.to_ne_bytes());
    reply.extend_from_slice(&error.to_ne_bytes());
    reply.extend_from_slice(&[40, 0, 0, 0, 16, 0, 5, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    reply
}

/// `system_socket` events (see its target): a bus connection as root,
/// then `bytes` in chunks of at most 255.
fn bus_session(conn: u8, bytes: &[u8]) -> Vec<u8> {
    let mut script = vec![3, conn, 0];
    for chunk in bytes.chunks(255) {
        script.extend_from_slice(&[4, conn, chunk.len() as u8]);
        script.extend_from_slice(chunk);
    }
    script
}

const MOUNTINFO: &str = "\
22 1 0:21 / / ro,relatime shared:1 - erofs /root.erofs ro
23 22 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs devtmpfs rw,size=1013k,nr_inodes=253k,mode=755
24 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:3 - proc proc rw
25 22 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:4 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw
27 22 0:25 / /run rw,nosuid,nodev shared:6 - tmpfs tmpfs rw,mode=755
28 22 254:2 / /var rw,relatime shared:7 - ext4 /dev/vda2 rw
29 22 0:26 / /etc rw,relatime shared:8 - overlay overlay rw,lowerdir=/etc,upperdir=/var/lib/kios/etc/upper,workdir=/var/lib/kios/etc/work
30 28 0:27 / /var/lib/kubelet/pods/0f3c/volumes/kubernetes.io~projected/kube-api-access-x rw,relatime shared:9 - tmpfs tmpfs rw,size=4k
31 28 0:28 / /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/ab12/shm rw,nosuid,nodev,noexec,relatime shared:10 - tmpfs shm rw,size=65536k
32 28 0:29 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/ab12/rootfs rw,relatime shared:11 - overlay overlay rw,lowerdir=/var/lib/containerd-snapshots/1/fs
33 22 0:30 / /mnt/with\\040space rw,relatime - tmpfs tmpfs rw
";

const KUBELET_CONFIG: &str = "\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: /etc/kubernetes/manifests
featureGates:
  GracefulNodeShutdown: true
shutdownGracePeriod: 20s
shutdownGracePeriodCriticalPods: 10s
cgroupDriver: cgroupfs
";

/// Every seed: target, file name, bytes.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let text = |s: &str| s.as_bytes().to_vec();
    let mut seeds = vec![
        // The command lines docs/kernel-command-line.md documents.
        ("cmdline", "qemu", text("console=ttyS0 quiet loglevel=7 kios.panic=halt\n")),
        ("cmdline", "all-options", text("console=ttyAMA0 kios.panic=poweroff kios.hostname=Node-1.example kios.shutdown_grace=45 kios.runtime_timeout=60 kios.data=/dev/nvme0n1p2 kios.data_timeout=30\n")),
        ("cmdline", "quoted", text("root=/dev/ram0 kios.hostname=\"node-2\" dyndbg=\"file drivers/* +p\" kios.data=auto\n")),
        ("cmdline", "rejected", text("kios.panic=explode kios.data=/dev/ kios.data_timeout=3601 kios.unknown kios.shutdown_grace=-1 kios.data=none\n")),
        // /etc/kubernetes/node-labels (docs/configuration.md).
        ("node_labels", "labels", text("# the node's labels\nnode.kubernetes.io/role=worker\ntopology.kubernetes.io/zone=eu-west-1a\nexample.com/tier=frontend\n\nkios=\n")),
        ("node_labels", "invalid", text("kubernetes.io/role=master\nbad key=x\n-start=1\nkey=value with spaces\nnoequals\n=1\n")),
        ("node_ip", "ipv4", text("\x0010.0.0.5\n")),
        ("node_ip", "dual-stack", text("\x0110.0.0.5,fd00::5\n")),
        ("node_ip", "ipv6-forms", text("\x012001:db8:0:0:1:0:0:1\n")),
        ("node_ip", "mapped", text("\x00::ffff:192.168.1.7\n")),
        ("hostname", "fqdn", text("node-1.example.com\n")),
        ("hostname", "first-boot", text("kios-0123456789ab\n")),
        ("hostname", "upper", text("Worker-A\nsecond line\n")),
        ("mountinfo", "node", text(MOUNTINFO)),
        ("module_list", "early", text("# disk and filesystem drivers, before /var\n/lib/modules/virtio_blk.ko\n/lib/modules/crc16.ko\n/lib/modules/mbcache.ko\n/lib/modules/jbd2.ko\n/lib/modules/ext4.ko\n")),
        ("module_list", "late", text("/lib/modules/overlay.ko\r\n  /lib/modules/br_netfilter.ko  \n\n/lib/modules/evdev.ko\n/lib/modules/button.ko\n")),
        ("kubelet_config", "shipped", files(&[KUBELET_CONFIG.as_bytes(), b"10.0.0.5\n", b"node.kubernetes.io/role=worker\n"])),
        ("kubelet_config", "durations", files(&[b"shutdownGracePeriod: \"1m30s\" # one and a half\n", b"fd00::5,10.0.0.5", b"example.com/a=b\nexample.com/c=d\n"])),
        ("kubelet_config", "bad", files(&[b"shutdownGracePeriod: 2h\n", b"256.1.1.1\n", b"kubernetes.io/role=x\n"])),
        ("gpt", "disk-512", files(&[b"512\n", &gpt_disk(512, 4), &ext4_start()])),
        ("gpt", "disk-4096", files(&[b"4096\n", &gpt_disk(4096, 2), &ext4_start()])),
        ("gpt", "no-ext4", files(&[b"512\n", &gpt_disk(512, 2), &[0u8; 2048]])),
        ("netlink", "ack", netlink_ack(0)),
        ("netlink", "eexist", netlink_ack(-17)),
        ("netlink", "ifname", cat(&[&netlink_ack(0)[..4], b"eth0"])),
        ("dbus_wire", "libdbus-hello", cat(&[&[0], LIBDBUS_HELLO])),
        ("dbus_wire", "daemon-hello-reply", cat(&[&[0], DAEMON_HELLO_REPLY])),
        ("dbus_wire", "write-return", cat(&[&[1, 1], &7u32.to_le_bytes(), &3u32.to_le_bytes(), &[0, 0, 0, 0, 20], b"org.freedesktop.DBus", &[4], b":1.7", &[4], b":1.7", &[1, 64]])),
        ("dbus_auth", "godbus", cat(&[&[0], GODBUS_AUTH])),
        ("dbus_auth", "data", cat(&[&[0], b"\0AUTH EXTERNAL\r\nDATA 30\r\nBEGIN\r\n"])),
        ("dbus_auth", "not-root", cat(&[&[1], b"\0AUTH EXTERNAL 31303030\r\nCANCEL\r\nBEGIN\r\n"])),
        ("evdev", "power-press", cat(&[&input_event(1, 116, 1), &input_event(0, 0, 0)])),
        ("evdev", "power-release", input_event(1, 116, 0)),
        ("evdev", "device-name", text("event12")),
        // Reads of 64 bytes (first byte 63) and of 4096 (255).
        ("child_output", "containerd", cat(&[&[63], b"time=\"2026-01-01T00:00:00Z\" level=info msg=\"starting containerd\" revision= version=1.6.20\nlevel=info msg=\"serving...\" address=/run/containerd/containerd.sock\n"])),
        ("child_output", "kubelet-long", cat(&[&[255], b"I0101 00:00:00.000000  1 server.go:416] Version: v1.20.2\n", &[b'x'; 1000], b"\n\npartial"])),
        // Boot entries as the disk builder names them and systemd-boot renames them.
        ("boot_entries", "counting", text("kios-0.18.0-a+2-1.efi")),
        ("boot_entries", "given-up", text("kios-2-broken-b+0-3.efi")),
        ("boot_entries", "good", text("kios-0.18.0-b+3.efi")),
        ("boot_entries", "not-counted", text("kios-1.0+git-a.efi")),
    ];
    let kubelet = [GODBUS_HELLO, GODBUS_GET, GODBUS_INHIBIT, GODBUS_ADD_MATCH]
        .map(hex)
        .concat();
    for (name, message) in [
        ("godbus-hello", GODBUS_HELLO),
        ("godbus-get", GODBUS_GET),
        ("godbus-inhibit", GODBUS_INHIBIT),
        ("godbus-add-match", GODBUS_ADD_MATCH),
        ("godbus-kill-unit", GODBUS_KILL_UNIT),
        ("godbus-get-big-endian", GODBUS_GET_BIG_ENDIAN),
    ] {
        seeds.push(("dbus_wire", name, cat(&[&[0], &hex(message)])));
    }
    // Authenticated (bit 0), the shutdown after the fifth step.
    seeds.push(("dbus_logind", "kubelet", cat(&[&[1 | 5 << 1], &kubelet])));
    seeds.push((
        "dbus_logind",
        "kubelet-auth",
        cat(&[&[0xfe], GODBUS_AUTH, &kubelet, &hex(GODBUS_KILL_UNIT)]),
    ));
    // system_socket: no fuzzed failures (first byte even), then events.
    seeds.push(("system_socket", "shutdown", vec![0, 9, 1, 8, 0, 0, 0, 2]));
    seeds.push((
        "system_socket",
        "restarts",
        vec![0, 8, 2, 8, 3, 1, 1, 2, 7, 1, 0, 3, 6],
    ));
    seeds.push((
        "system_socket",
        "kubelet-shutdown",
        cat(&[
            &[0],
            &bus_session(1, &cat(&[GODBUS_AUTH, &kubelet])),
            &[6, 7, 5, 1, 1, 0, 1, 2, 0],
        ]),
    ));
    seeds
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_committed_seeds_are_these() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let write = std::env::var_os("KIOS_FUZZ_WRITE_SEEDS").is_some();
        for (target, name, bytes) in seeds() {
            assert!(crate::TARGETS.contains(&target), "{target}");
            let path = corpus.join(target).join(name);
            if write {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            }
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(
                committed == bytes,
                "{} differs: KIOS_FUZZ_WRITE_SEEDS=1",
                path.display()
            );
        }
        for target in crate::TARGETS {
            assert!(corpus.join(target).is_dir(), "no seeds for {target}");
        }
    }

    #[test]
    fn the_seed_disk_holds_the_data_partition() {
        use kios_init::storage::gpt;
        let disk = gpt_disk(512, 4);
        let array = gpt::parse_header(&disk[512..1024], 16384).unwrap();
        assert_eq!(
            gpt::find_partition(&array, &disk[1024..], &gpt::DATA_PARTITION_TYPE),
            Ok(Some(2))
        );
    }

    #[test]
    fn the_seed_bus_messages_parse() {
        for message in [GODBUS_HELLO, GODBUS_GET, GODBUS_INHIBIT, GODBUS_ADD_MATCH] {
            crate::assert_messages(&hex(message));
        }
    }

    #[test]
    fn sections_split_and_pad() {
        let joined = files(&[b"a", b"b\n%%\nc"]);
        assert_eq!(crate::sections::<2>(&joined), [&b"a"[..], b"b\n%%\nc"]);
        assert_eq!(crate::sections::<3>(b"x"), [&b"x"[..], b"", b""]);
    }
}
