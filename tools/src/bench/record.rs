//! The recorded runs in benches/results/: what a record holds (the
//! report, its schema version and what it was measured with), its file
//! name, writing one without ever replacing another, loading one of any
//! schema, and finding the previous one.
//!
//! Names: `boot-<date>T<HHMMSS>Z-<key>-<arches>.json` beside its `.svg`,
//! e.g. `boot-2026-12-06T013012Z-kios-amd64+arm64.json`, where the key is
//! the kernel, plus `-kvm` for KVM runs and `-console-all` for runs whose
//! console showed every child line. Records from before schema 2 are
//! named `boot-<date>-<key>.json` and are still found and read.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::provenance::{ArchEnvironment, GitRevision};
use super::report::BenchReport;

/// The schema of the records this version writes. 1: the report alone
/// (no `schema_version` field); 2: `schema_version`, `recorded_at`,
/// `git` and `environment` beside the report's fields.
pub const SCHEMA_VERSION: u32 = 2;

fn first_schema() -> u32 {
    1
}

/// One file in benches/results/: the report's fields at the top level
/// (as in schema 1) and what the run was measured with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRun {
    #[serde(default = "first_schema")]
    pub schema_version: u32,
    /// When the run was recorded, `YYYY-MM-DDTHH:MM:SSZ`.
    #[serde(default)]
    pub recorded_at: Option<String>,
    /// The workspace's commit; null where git was not available.
    #[serde(default)]
    pub git: Option<GitRevision>,
    #[serde(flatten)]
    pub report: BenchReport,
    /// Per arch (Debian name): the QEMU and the component versions.
    #[serde(default)]
    pub environment: BTreeMap<String, ArchEnvironment>,
}

/// When a run was recorded, to the second, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordTime {
    unix_seconds: u64,
}

impl RecordTime {
    pub fn now() -> Result<RecordTime> {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?;
        Ok(RecordTime::from_unix_seconds(since_epoch.as_secs()))
    }

    pub fn from_unix_seconds(unix_seconds: u64) -> RecordTime {
        RecordTime { unix_seconds }
    }

    /// YYYY-MM-DD.
    pub fn date(self) -> String {
        civil_date(self.unix_seconds / 86_400)
    }

    fn hours_minutes_seconds(self) -> (u64, u64, u64) {
        let of_day = self.unix_seconds % 86_400;
        (of_day / 3600, of_day / 60 % 60, of_day % 60)
    }

    /// `2026-12-06T01:30:12Z` (RFC 3339).
    pub fn rfc3339(self) -> String {
        let (hours, minutes, seconds) = self.hours_minutes_seconds();
        format!("{}T{hours:02}:{minutes:02}:{seconds:02}Z", self.date())
    }

    /// `2026-12-06T013012Z`: the same, without the colons a file name
    /// should not carry.
    fn file_stamp(self) -> String {
        let (hours, minutes, seconds) = self.hours_minutes_seconds();
        format!("{}T{hours:02}{minutes:02}{seconds:02}Z", self.date())
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), so no date crate is needed for a file name.
pub fn civil_date(days: u64) -> String {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Where recorded runs live.
pub fn results_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join("benches/results")
}

/// A record's JSON and chart: `boot-<date>T<HHMMSS>Z-<key>-<arches>`,
/// arches joined by `+`. Two runs get the same name only when they end in
/// the same second with the same key and arches.
pub fn record_paths(
    results_dir: &Path,
    time: RecordTime,
    key: &str,
    arches: &[&str],
) -> (PathBuf, PathBuf) {
    let stem = format!("boot-{}-{key}-{}", time.file_stamp(), arches.join("+"));
    (
        results_dir.join(format!("{stem}.json")),
        results_dir.join(format!("{stem}.svg")),
    )
}

/// The names of schema 1 records, one per day and key: `boot-<date>-<key>`.
pub fn result_paths(results_dir: &Path, date: &str, key: &str) -> (PathBuf, PathBuf) {
    (
        results_dir.join(format!("boot-{date}-{key}.json")),
        results_dir.join(format!("boot-{date}-{key}.svg")),
    )
}

/// What a record's file name says: when it was recorded and its key.
#[derive(Debug, PartialEq, Eq)]
struct RecordName<'a> {
    date: &'a str,
    /// HHMMSS; None in schema 1 names, which sort before a new name of
    /// the same day.
    time: Option<&'a str>,
    key: &'a str,
}

impl<'a> RecordName<'a> {
    fn parse(file_name: &'a str) -> Option<RecordName<'a>> {
        let stem = file_name.strip_prefix("boot-")?.strip_suffix(".json")?;
        let date = stem.get(..10)?;
        let is_date = date.bytes().enumerate().all(|(index, byte)| match index {
            4 | 7 => byte == b'-',
            _ => byte.is_ascii_digit(),
        });
        if !is_date {
            return None;
        }
        let rest = stem.get(10..)?;
        let (time, key) = match rest.strip_prefix('T') {
            Some(timed) => {
                let (time, key_and_arches) = timed.split_once("Z-")?;
                if time.len() != 6 || !time.bytes().all(|byte| byte.is_ascii_digit()) {
                    return None;
                }
                let (key, arches) = key_and_arches.rsplit_once('-')?;
                if arches.is_empty() {
                    return None;
                }
                (Some(time), key)
            }
            None => (None, rest.strip_prefix('-')?),
        };
        (!key.is_empty()).then_some(RecordName { date, time, key })
    }
}

/// The newest recorded run with record key `key` (the kernel, plus
/// `-kvm` for KVM runs), in either naming, if any.
pub fn latest_result(results_dir: &Path, key: &str) -> Result<Option<(PathBuf, BenchReport)>> {
    if !results_dir.exists() {
        return Ok(None);
    }
    let mut recorded = Vec::new();
    for entry in std::fs::read_dir(results_dir)
        .with_context(|| format!("listing {}", results_dir.display()))?
    {
        let path = entry
            .with_context(|| format!("listing {}", results_dir.display()))?
            .path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if let Some(parsed) = RecordName::parse(name).filter(|parsed| parsed.key == key) {
            recorded.push((
                (parsed.date.to_string(), parsed.time.map(str::to_string)),
                path,
            ));
        }
    }
    recorded.sort();
    let Some((_, path)) = recorded.pop() else {
        return Ok(None);
    };
    let run = load_record(&path)?;
    Ok(Some((path, run.report)))
}

/// Reads a record of any schema this version knows.
pub fn load_record(path: &Path) -> Result<RecordedRun> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let run: RecordedRun =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if run.schema_version > SCHEMA_VERSION {
        bail!(
            "{} is a schema {} record; this kios bench reads schemas 1 to {SCHEMA_VERSION}",
            path.display(),
            run.schema_version
        );
    }
    Ok(run)
}

/// Writes a run as pretty JSON (small: phases and sizes, no consoles),
/// refusing to replace an existing file.
pub fn record(run: &impl Serialize, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut json = serde_json::to_string_pretty(run).context("encoding the report")?;
    json.push('\n');
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| {
            format!(
                "creating {} (a recorded run is never replaced)",
                path.display()
            )
        })?;
    file.write_all(json.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::super::compare::compare;
    use super::super::fixtures::{
        amd64, phases, report, BASELINE_AMD64, KIOS_AMD64, SCHEMA_1_RECORD,
    };
    use super::*;

    /// 2026-12-06T01:30:12Z.
    const EARLY_SATURDAY: u64 = 1_796_520_612;

    fn recorded_run() -> RecordedRun {
        RecordedRun {
            schema_version: SCHEMA_VERSION,
            recorded_at: Some(RecordTime::from_unix_seconds(EARLY_SATURDAY).rfc3339()),
            git: Some(GitRevision {
                commit: "9ed9745".repeat(5) + "01234",
                dirty: true,
            }),
            report: report(vec![amd64(phases(&KIOS_AMD64), phases(&BASELINE_AMD64))]),
            environment: BTreeMap::from([(
                "amd64".to_string(),
                ArchEnvironment {
                    qemu: Some("QEMU emulator version 7.2.15".to_string()),
                    components: BTreeMap::from([
                        (
                            "kubelet".to_string(),
                            "1.20.5+really1.20.2-1.1+deb12u1".to_string(),
                        ),
                        ("runc".to_string(), "1.1.5+ds1-1+deb12u1".to_string()),
                    ]),
                },
            )]),
        }
    }

    #[test]
    fn a_schema_1_record_loads_and_compares() {
        let old: RecordedRun = serde_json::from_str(SCHEMA_1_RECORD).unwrap();
        assert_eq!(old.schema_version, 1);
        assert_eq!((old.recorded_at, old.git), (None, None));
        assert!(old.environment.is_empty());
        assert_eq!(
            old.report.kernel, "debian",
            "schema 1 runs booted Debian's kernel"
        );
        assert_eq!(old.report.arches[0].kios.median("pid1"), Some(2_213_861));

        let deltas = compare(&old.report, &recorded_run().report);
        // The kiOS scenario's six phases and its cost: the old run has no baseline.
        assert_eq!(deltas.len(), 7, "{deltas:?}");
        assert!(deltas
            .iter()
            .all(|delta| delta.scenario == super::super::Scenario::Kios));
    }

    #[test]
    fn a_schema_2_record_keeps_its_provenance_beside_the_report() {
        let run = recorded_run();
        let json = serde_json::to_string_pretty(&run).unwrap();
        assert!(
            json.starts_with(
                "{\n  \"schema_version\": 2,\n  \"recorded_at\": \"2026-12-06T01:30:12Z\""
            ),
            "{json}"
        );
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["git"]["dirty"], true);
        assert_eq!(
            value["kernel"], "kios",
            "the report's fields stay at the top level"
        );
        assert_eq!(
            value["environment"]["amd64"]["qemu"],
            "QEMU emulator version 7.2.15"
        );
        assert_eq!(
            value["environment"]["amd64"]["components"]["runc"],
            "1.1.5+ds1-1+deb12u1"
        );
        assert_eq!(serde_json::from_str::<RecordedRun>(&json).unwrap(), run);

        let without_git = RecordedRun { git: None, ..run };
        let json = serde_json::to_string(&without_git).unwrap();
        assert!(json.contains(r#""git":null"#), "{json}");
    }

    #[test]
    fn a_record_of_a_newer_schema_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("boot-2030-01-01T000000Z-kios-amd64.json");
        let future = SCHEMA_1_RECORD.replacen('{', r#"{ "schema_version": 3,"#, 1);
        std::fs::write(&path, future).unwrap();
        let error = load_record(&path).unwrap_err().to_string();
        assert!(
            error.contains("schema 3") && error.contains("1 to 2"),
            "{error}"
        );
    }

    #[test]
    fn times_in_utc_to_the_second() {
        let time = RecordTime::from_unix_seconds(EARLY_SATURDAY);
        assert_eq!(time.date(), "2026-12-06");
        assert_eq!(time.rfc3339(), "2026-12-06T01:30:12Z");
        assert_eq!(
            RecordTime::from_unix_seconds(86_399).rfc3339(),
            "1970-01-01T23:59:59Z"
        );
        assert_eq!(civil_date(19_782), "2024-02-29");
    }

    #[test]
    fn names_carry_date_time_key_and_arches_and_differ_within_a_day() {
        let dir = Path::new("/results");
        let time = RecordTime::from_unix_seconds(EARLY_SATURDAY);
        let (json, svg) = record_paths(dir, time, "kios", &["amd64", "arm64"]);
        assert_eq!(
            json,
            dir.join("boot-2026-12-06T013012Z-kios-amd64+arm64.json")
        );
        assert_eq!(
            svg,
            dir.join("boot-2026-12-06T013012Z-kios-amd64+arm64.svg")
        );

        let later_that_day = RecordTime::from_unix_seconds(EARLY_SATURDAY + 1);
        assert_ne!(
            record_paths(dir, later_that_day, "kios", &["amd64", "arm64"]).0,
            json
        );
        assert_eq!(
            record_paths(dir, later_that_day, "kios-kvm", &["amd64"]).0,
            dir.join("boot-2026-12-06T013013Z-kios-kvm-amd64.json")
        );
    }

    #[test]
    fn both_namings_parse_and_others_do_not() {
        let parsed = |name| RecordName::parse(name).map(|n| (n.date, n.time, n.key));
        assert_eq!(
            parsed("boot-2026-12-06T013012Z-kios-kvm-amd64+arm64.json"),
            Some(("2026-12-06", Some("013012"), "kios-kvm"))
        );
        assert_eq!(
            parsed("boot-2026-11-22-debian.json"),
            Some(("2026-11-22", None, "debian"))
        );
        assert_eq!(
            parsed("boot-2026-11-22-kios-kvm.json"),
            Some(("2026-11-22", None, "kios-kvm"))
        );
        for other in [
            "boot-2026-11-22-kios.svg",
            "boot-2026-11-22.json",
            "boot-2026-12-06T0130Z-kios-amd64.json",
            "boot-2026-12-06T013012Z-amd64.json",
            "boot-20261206T013012Z-kios-amd64.json",
            "README.md",
        ] {
            assert_eq!(parsed(other), None, "{other}");
        }
    }

    #[test]
    fn a_record_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let run = recorded_run();
        let time = RecordTime::from_unix_seconds(EARLY_SATURDAY);
        let (first, _) = record_paths(dir.path(), time, "kios", &["amd64"]);
        record(&run, &first).unwrap();
        let error = record(&run, &first).unwrap_err();
        assert!(format!("{error:#}").contains("never replaced"), "{error:#}");
        let (second, _) = record_paths(
            dir.path(),
            RecordTime::from_unix_seconds(EARLY_SATURDAY + 60),
            "kios",
            &["amd64"],
        );
        record(&run, &second).unwrap();
        assert_eq!(load_record(&first).unwrap(), run);
    }

    #[test]
    fn the_previous_record_is_the_newest_of_its_key_in_either_naming() {
        let dir = tempfile::tempdir().unwrap();
        assert!(latest_result(dir.path(), "kios").unwrap().is_none());
        let mut old = recorded_run().report;
        old.date = "2026-12-05".to_string();
        record(&old, &result_paths(dir.path(), "2026-12-05", "kios").0).unwrap();
        let (path, found) = latest_result(dir.path(), "kios")
            .unwrap()
            .expect("the old record");
        assert_eq!(
            (path.file_name().unwrap(), &found),
            ("boot-2026-12-05-kios.json".as_ref(), &old)
        );

        // Newer, but another key each: KVM runs and the Debian kernel are recorded apart.
        let next_day = RecordTime::from_unix_seconds(EARLY_SATURDAY + 86_400);
        record(
            &recorded_run(),
            &record_paths(dir.path(), next_day, "kios-kvm", &["amd64"]).0,
        )
        .unwrap();
        record(
            &recorded_run(),
            &record_paths(dir.path(), next_day, "debian", &["amd64"]).0,
        )
        .unwrap();
        assert_eq!(latest_result(dir.path(), "kios").unwrap().unwrap().0, path);

        // A new name of the same day as an old one is the newer; later times win.
        let same_day_as_old = RecordTime::from_unix_seconds(EARLY_SATURDAY - 86_400);
        record(
            &recorded_run(),
            &record_paths(dir.path(), same_day_as_old, "kios", &["arm64"]).0,
        )
        .unwrap();
        let morning = RecordTime::from_unix_seconds(EARLY_SATURDAY);
        let evening = RecordTime::from_unix_seconds(EARLY_SATURDAY + 18 * 3600);
        let (evening_path, _) = record_paths(dir.path(), evening, "kios", &["amd64"]);
        record(&recorded_run(), &evening_path).unwrap();
        record(
            &recorded_run(),
            &record_paths(dir.path(), morning, "kios", &["amd64", "arm64"]).0,
        )
        .unwrap();
        let (latest, report) = latest_result(dir.path(), "kios").unwrap().unwrap();
        assert_eq!(latest, evening_path);
        assert_eq!(report, recorded_run().report);
    }
}
