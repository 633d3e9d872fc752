//! The boot timeline: the init logs `kios: timeline <phase> us=<µs since
//! boot>` to kmsg once per phase; the host tools read it off the console.

/// Expands to the init's kmsg identity, so the marker below is built from
/// the same text at compile time.
macro_rules! init_ident {
    () => {
        "kios"
    };
}

/// The init's kmsg identity: every line it logs starts `kios: `.
pub const INIT_IDENT: &str = init_ident!();
/// The word after the identity on a timeline line.
pub const WORD: &str = "timeline";
/// What a timeline line starts with once the kernel's prefix is cut.
pub const MARKER: &str = concat!(init_ident!(), ": timeline ");

/// The phases the init reports, in the order it reaches them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Pid1,
    MountsDone,
    RuntimeExec,
    RuntimeReady,
    KubeletExec,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Pid1,
        Phase::MountsDone,
        Phase::RuntimeExec,
        Phase::RuntimeReady,
        Phase::KubeletExec,
    ];

    /// The name on the line.
    pub const fn name(self) -> &'static str {
        match self {
            Phase::Pid1 => "pid1",
            Phase::MountsDone => "mounts_done",
            Phase::RuntimeExec => "runtime_exec",
            Phase::RuntimeReady => "runtime_ready",
            Phase::KubeletExec => "kubelet_exec",
        }
    }

    pub fn from_name(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|phase| phase.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_the_identity_and_the_word() {
        assert_eq!(MARKER, "kios: timeline ");
        assert!(MARKER.starts_with(INIT_IDENT) && MARKER.trim_end().ends_with(WORD));
    }

    #[test]
    fn names_round_trip() {
        for phase in Phase::ALL {
            assert_eq!(Phase::from_name(phase.name()), Some(phase));
        }
        assert_eq!(Phase::from_name("bogus"), None);
    }
}
