//! Time on a node without a good clock (issue 19: a Raspberry Pi has no
//! real-time clock), end to end on the amd64 node image with the kiOS
//! kernel (TCG, no `-icount`) and a data disk, its real-time clock started
//! in 2001 at every boot (`-rtc base=2001-01-01`).
//!
//! The NTP server is the BOM's chronyd, run from its unpacked packages on
//! the loopback of a network namespace the test creates (as root) with no
//! other interface; QEMU runs in that namespace with its user-mode network
//! unrestricted (`restrict=on` drops all of the guest's UDP), so the
//! guest reaches the server as 10.0.2.2:123, and nothing else exists to
//! reach. The image's time source is replaced by `server 10.0.2.2 iburst`.
//!
//! 1. A fresh data partition: no last known time yet; the time-sync pod's
//!    chronyd steps the clock from 2001 to now; the power button, a clean
//!    shutdown, which saves the time.
//! 2. After 20 s off: the init moves the clock forward to the saved time
//!    before containerd starts; chronyd steps it by the time the node was
//!    off; 15 s later the power is cut (QEMU quits: no shutdown).
//! 3. The init restores the time the node saved when chronyd stepped the
//!    clock in boot 2 (the timerfd's save on a clock change, which survived
//!    the power cut); the boot stops once containerd starts.
//!
//! Ignored by default (QEMU, root): `cargo kios test` runs it (step
//! `e2e_timesync`).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kios_abi::data_partition::TYPE_GUID as DATA_PARTITION_TYPE_GUID;
use kios_tools::components::bom::Bom;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::disk::{
    make_ext4, parse_guid, write_gpt_disk, PartitionContents, PartitionSpec,
};
use kios_tools::image::node_image::vm_config;
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::fixture_node::node_image_with;
use kios_tools::testing::netns::LoopbackNamespace;
use kios_tools::testing::ntp_server::NtpServer;
use kios_tools::testing::standin_checks::{require_line, Check, CheckReport};
use kios_tools::vm::console::{Console, ConsoleLine};
use kios_tools::vm::qemu::{
    monitor_command, press_power_button, run_vm, GuestNetwork, LineVerdict, RunOptions, VmConfig,
    VmRun,
};
use kios_tools::vm::timeline::kmsg_micros;

const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
/// Where every boot's real-time clock starts.
const RTC_BASE: &str = "2001-01-01";
const RTC_BASE_SECS: u64 = 978_307_200;
/// The image's time source, replaced: the server on the namespace's loopback.
const SOURCES_PATH: &str = "/etc/kios/time-sources/default.sources";
const SOURCES: &str =
    "# TEST FIXTURE: the NTP server on the test's namespace loopback.\nserver 10.0.2.2 iburst\n";
const MARKER: &str = "kios-timesync: ";
const STEPPED: &str = "System clock was stepped by ";
const WRONG_BY: &str = "System clock wrong by ";
const RESTORED: &str = "kios: clock set forward from ";
const RUNTIME_EXEC: &str = "kios: timeline runtime_exec";
/// How long the node is off between the first two boots: the second's
/// clock is then that far behind, which chronyd steps away.
const OFF_BETWEEN_BOOTS: Duration = Duration::from_secs(20);
/// How long after boot 2's step the power is cut: ext4 commits its
/// journal every 5 s, so the saved time is on the disk by then.
const POWER_CUT_AFTER_STEP: Duration = Duration::from_secs(15);
/// How far chronyd's time after its step may be from the host's, in
/// seconds (the host's reading of the console line comes a little later).
const STEP_SLACK_SECS: f64 = 30.0;

/// A GPT disk with one empty ext4 partition of the kiOS data type.
fn data_disk(dir: &Path) -> PathBuf {
    let bytes = 512 << 20;
    let ext4 = dir.join("data.ext4");
    make_ext4(
        &ext4,
        bytes,
        "kios-data",
        uuid::Uuid::from_u128(0x6b696f73_7469_6d65_7379_6e6300000001),
    )
    .expect("making the data filesystem");
    let disk = dir.join("data.img");
    write_gpt_disk(
        &disk,
        parse_guid("6b696f73-7469-6d65-7379-6e6300000002").expect("guid"),
        &[PartitionSpec {
            name: "kios-data".into(),
            type_guid: parse_guid(DATA_PARTITION_TYPE_GUID).expect("guid"),
            guid: parse_guid("6b696f73-7469-6d65-7379-6e6300000003").expect("guid"),
            bytes,
            contents: PartitionContents::Image(ext4),
        }],
    )
    .expect("writing the data disk");
    disk
}

/// Seconds since the epoch of chronyd's `2026-12-06T16:20:31Z`.
fn utc_secs(stamp: &str) -> Option<i64> {
    let (date, time) = stamp.strip_suffix('Z')?.split_once('T')?;
    let mut date = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let mut time = time.splitn(3, ':').map(str::parse::<i64>);
    let (hour, minute, second) = (time.next()?.ok()?, time.next()?.ok()?, time.next()?.ok()?);
    // Days since 1970-01-01 in the proleptic Gregorian calendar, counting
    // years from March so that the leap day ends one.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// One boot's console with the host's wall time when QEMU started.
struct Boot {
    run: VmRun,
    started: SystemTime,
}

impl Boot {
    fn console(&self) -> &Console {
        &self.run.console
    }

    /// The host's wall time (s since the epoch) when a line was read.
    fn host_secs(&self, line: &ConsoleLine) -> f64 {
        (self.started + line.at)
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64()
    }

    fn line(&self, needle: &str) -> Result<&ConsoleLine, String> {
        let index = self
            .console()
            .position(needle)
            .ok_or(format!("no line containing `{needle}`"))?;
        Ok(&self.console().lines[index])
    }

    /// The first of chronyd's lines (as the pod copied them) holding
    /// `needle`: its timestamp and the rest.
    fn chronyd(&self, needle: &str) -> Result<(&ConsoleLine, i64, &str), String> {
        for line in &self.console().lines {
            let Some(start) = line.text.find(MARKER) else {
                continue;
            };
            let text = &line.text[start + MARKER.len()..];
            if let Some((stamp, message)) = text.split_once(' ') {
                if message.contains(needle) {
                    let secs = utc_secs(stamp).ok_or(format!("chronyd's time `{stamp}`"))?;
                    return Ok((line, secs, message));
                }
            }
        }
        Err(format!("no `{MARKER}` line containing `{needle}`"))
    }

    /// The seconds in chronyd's `System clock was stepped by 12.345 seconds`.
    fn step(&self) -> Result<(&ConsoleLine, i64, f64), String> {
        let (line, secs, message) = self.chronyd(STEPPED)?;
        let offset = message[message.find(STEPPED).unwrap_or(0) + STEPPED.len()..]
            .split_whitespace()
            .next()
            .and_then(|number| number.parse().ok())
            .ok_or(format!("no offset in `{message}`"))?;
        Ok((line, secs, offset))
    }

    /// The init's restore line: (from, to), in seconds since the epoch.
    fn restored(&self) -> Result<(u64, u64), String> {
        let line = self.line(RESTORED)?;
        let rest = &line.text[line.text.find(RESTORED).unwrap_or(0) + RESTORED.len()..];
        let mut words = rest.split_whitespace();
        let from = words.next().and_then(|word| word.parse().ok());
        let to = words.nth(1).and_then(|word| word.parse().ok());
        match (from, to) {
            (Some(from), Some(to)) => Ok((from, to)),
            _ => Err(format!("unreadable: `{}`", line.text)),
        }
    }

    /// The real-time clock the kernel read (`setting system clock to
    /// 2001-01-01T00:00:04 UTC (978307204)`): in the first minutes of 2001.
    fn started_in_2001(&self) -> Result<(), String> {
        let line = self.line("setting system clock to")?;
        let secs: u64 = line
            .text
            .rsplit_once('(')
            .and_then(|(_, rest)| rest.trim_end_matches(')').parse().ok())
            .ok_or(format!("unreadable: `{}`", line.text))?;
        if (RTC_BASE_SECS..RTC_BASE_SECS + 300).contains(&secs) {
            Ok(())
        } else {
            Err(format!(
                "the kernel's clock started at {secs}: `{}`",
                line.text
            ))
        }
    }

    /// Whether the line containing `needle` comes before containerd's start.
    fn before_runtime(&self, needle: &str) -> Result<(), String> {
        let position = |needle| {
            self.console()
                .position(needle)
                .ok_or(format!("no line containing `{needle}`"))
        };
        if position(needle)? < position(RUNTIME_EXEC)? {
            Ok(())
        } else {
            Err(format!("`{needle}` came after `{RUNTIME_EXEC}`"))
        }
    }

    fn guest_secs(&self, line: &ConsoleLine) -> Option<f64> {
        kmsg_micros(&line.text).map(|micros| micros as f64 / 1e6)
    }
}

fn check(name: &'static str, outcome: Result<(), String>) -> Check {
    Check { name, outcome }
}

fn within(what: &str, value: f64, low: f64, high: f64) -> Result<(), String> {
    if (low..=high).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{what} is {value:.1}, not within [{low:.1}, {high:.1}]"
        ))
    }
}

/// Boots `config` once, calling `on_line` for each console line.
fn boot(config: &VmConfig, on_line: impl FnMut(&ConsoleLine) -> LineVerdict) -> Boot {
    let started = SystemTime::now();
    let run = run_vm(
        config,
        RunOptions {
            timeout: BOOT_TIMEOUT,
            echo: true,
        },
        on_line,
    )
    .expect("booting the node");
    Boot { run, started }
}

#[test]
#[ignore = "boots the node in QEMU three times in a network namespace (root): run by cargo kios test"]
fn a_node_starting_in_2001_takes_its_time_from_ntp_and_keeps_it_on_the_data_partition() {
    let workspace = Workspace::locate().expect("workspace");
    let bom = Bom::of(&workspace).expect("the BOM");
    let (image, out) = node_image_with(
        Arch::Amd64,
        KernelChoice::Kios,
        "e2e-timesync",
        vec![(SOURCES_PATH.to_string(), SOURCES.as_bytes().to_vec())],
    )
    .expect("building the node image");
    let namespace = LoopbackNamespace::create(&format!("kios-timesync-{}", std::process::id()))
        .expect("creating the network namespace");
    let server = NtpServer::start(&bom, &namespace, &out.join("ntp-server"))
        .expect("starting the NTP server");
    let monitor = out.join("monitor.sock");
    let config = VmConfig {
        extra_disks: vec![data_disk(&out)],
        guest_network: GuestNetwork::LoopbackNamespace(namespace.name().to_string()),
        rtc_base: Some(RTC_BASE.to_string()),
        monitor_socket: Some(monitor.clone()),
        ..vm_config(&image, false)
    };
    let started = std::time::Instant::now();

    // 1. Stepped from 2001, then a clean shutdown.
    let _ = std::fs::remove_file(&monitor);
    let mut pressed = None;
    let first = boot(&config, |line| {
        if pressed.is_none() && line.text.contains(MARKER) && line.text.contains(STEPPED) {
            pressed = Some(press_power_button(&monitor));
        }
        LineVerdict::Continue
    });
    std::thread::sleep(OFF_BETWEEN_BOOTS);

    // 2. Restored, stepped by the time off, then the power is cut.
    let _ = std::fs::remove_file(&monitor);
    let (cut_tx, cut_rx) = mpsc::channel();
    let mut cutting = false;
    let second = boot(&config, |line| {
        if !cutting && line.text.contains(MARKER) && line.text.contains(STEPPED) {
            cutting = true;
            let (monitor, cut_tx) = (monitor.clone(), cut_tx.clone());
            std::thread::spawn(move || {
                std::thread::sleep(POWER_CUT_AFTER_STEP);
                let _ = cut_tx.send((SystemTime::now(), monitor_command(&monitor, "quit")));
            });
        }
        LineVerdict::Continue
    });
    let cut = cut_rx.recv_timeout(Duration::from_secs(5)).ok();

    // 3. Restored from the save at boot 2's step; stops once containerd starts.
    let third = boot(&config, |line| {
        if line.text.contains(RUNTIME_EXEC) {
            LineVerdict::Stop
        } else {
            LineVerdict::Continue
        }
    });
    let wall_time = started.elapsed();
    drop(server);
    drop(namespace);

    let mut checks = Vec::new();
    // Boot 1.
    checks.push(check(
        "boot 1: the kernel set the clock from the real-time clock, in 2001",
        first.started_in_2001(),
    ));
    checks.push(check(
        "boot 1: a fresh data partition has no last known time",
        require_line(
            first.console(),
            "kios: /var/lib/kios/clock: not present, the clock stays as the kernel set it",
        ),
    ));
    checks.push(check(
        "boot 1: chronyd took the test's server",
        first.chronyd("Selected source 10.0.2.2").map(drop),
    ));
    let first_step = first.step();
    checks.push(check(
        "boot 1: chronyd found the clock in 2001 and stepped it to the host's time",
        first.chronyd(WRONG_BY).and_then(|(_, wrong_at, _)| {
            let (line, stepped_at, offset) = first_step.clone()?;
            within(
                "chronyd's time before the step (s after 2001-01-01)",
                (wrong_at - RTC_BASE_SECS as i64) as f64,
                0.0,
                600.0,
            )?;
            within(
                "chronyd's time after the step, less the host's",
                stepped_at as f64 - first.host_secs(line),
                -STEP_SLACK_SECS,
                STEP_SLACK_SECS,
            )?;
            within(
                "the step (s)",
                offset,
                (first.host_secs(line) - RTC_BASE_SECS as f64) - 600.0,
                first.host_secs(line) - RTC_BASE_SECS as f64,
            )
        }),
    ));
    checks.push(check(
        "boot 1: the power button shut the node down cleanly, the time saved",
        match &pressed {
            Some(Ok(())) => require_line(first.console(), "kios: power off").and_then(|()| {
                if first.console().contains("saving the time in") {
                    Err("saving the time failed".into())
                } else {
                    Ok(())
                }
            }),
            Some(Err(error)) => Err(format!("{error:#}")),
            None => Err("chronyd never stepped the clock".into()),
        },
    ));
    // Boot 2.
    checks.push(check(
        "boot 2: the kernel set the clock from the real-time clock, in 2001",
        second.started_in_2001(),
    ));
    checks.push(check(
        "boot 2: before containerd, the clock moved from 2001 to the time boot 1 saved at its shutdown",
        second.restored().and_then(|(from, to)| {
            within(
                "the clock before (s after 2001-01-01)",
                from.saturating_sub(RTC_BASE_SECS) as f64,
                0.0,
                600.0,
            )?;
            let power_off = first.line("kios: power off")?;
            within(
                "the restored time, less the host's at boot 1's power off",
                to as f64 - first.host_secs(power_off),
                -15.0,
                1.0,
            )?;
            second.before_runtime(RESTORED)
        }),
    ));
    let second_step = second.step();
    checks.push(check(
        "boot 2: chronyd stepped the clock by about the time the node was off",
        second_step.clone().and_then(|(line, stepped_at, offset)| {
            within(
                "chronyd's time after the step, less the host's",
                stepped_at as f64 - second.host_secs(line),
                -STEP_SLACK_SECS,
                STEP_SLACK_SECS,
            )?;
            within(
                "the step (s)",
                offset,
                OFF_BETWEEN_BOOTS.as_secs_f64() - 5.0,
                OFF_BETWEEN_BOOTS.as_secs_f64() + 120.0,
            )
        }),
    ));
    checks.push(check(
        "boot 2: the power was cut, no shutdown",
        match &cut {
            Some((_, Ok(()))) if !second.console().contains("kios: shutdown requested") => Ok(()),
            Some((_, Ok(()))) => Err("the node shut down".into()),
            Some((_, Err(error))) => Err(format!("{error:#}")),
            None => Err("never cut (no step in boot 2?)".into()),
        },
    ));
    // Boot 3.
    checks.push(check(
        "boot 3: before containerd, the clock moved to the time boot 2 saved when chronyd stepped it",
        third.restored().and_then(|(_, to)| {
            let (step_line, _, _) = second_step.clone()?;
            let cut_at = cut
                .as_ref()
                .map(|(at, _)| at.duration_since(UNIX_EPOCH).expect("after 1970").as_secs_f64())
                .ok_or("the power was never cut")?;
            // The pod copies chronyd's log once a second: its line comes
            // a little after the step and the save.
            within(
                "the restored time, less the host's at boot 2's step",
                to as f64 - second.host_secs(step_line),
                -10.0,
                cut_at - second.host_secs(step_line),
            )?;
            third.before_runtime(RESTORED)
        }),
    ));

    if let Ok((line, _, offset)) = &first_step {
        if let (Some(step), Some(kubelet)) = (
            first.guest_secs(line),
            first
                .line("kios: timeline kubelet_exec")
                .ok()
                .and_then(|line| first.guest_secs(line)),
        ) {
            println!(
                "boot 1: clock stepped by {offset:.0} s, {:.1} s after the kubelet started (guest time)",
                step - kubelet
            );
        }
    }
    println!(
        "three boots in {:.0} s of host time (with {} s off between the first two)",
        wall_time.as_secs_f64(),
        OFF_BETWEEN_BOOTS.as_secs()
    );
    let report = CheckReport { checks };
    print!("{report}");
    report
        .into_result()
        .expect("the node takes its time from NTP and keeps it");
}

#[test]
fn chronyds_timestamps_read_as_utc_seconds() {
    assert_eq!(utc_secs("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(utc_secs("2001-01-01T00:00:00Z"), Some(RTC_BASE_SECS as i64));
    assert_eq!(utc_secs("2000-02-29T00:00:00Z"), Some(951_782_400));
    assert_eq!(utc_secs("2025-06-12T10:20:30Z"), Some(1_749_723_630));
    assert_eq!(utc_secs("2026-12-06"), None);
    assert_eq!(utc_secs("2026-12-06T16:20Z"), None);
}
