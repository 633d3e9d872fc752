//! The serial console of a VM run, line by line, with host timestamps.

use std::time::Duration;

/// One console line (without `\r`/`\n`) and when the host read it, since QEMU started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleLine {
    pub at: Duration,
    pub text: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Console {
    pub lines: Vec<ConsoleLine>,
}

impl Console {
    /// A console from plain text, all lines at time zero (for tests and replays).
    pub fn from_text(text: &str) -> Console {
        Console {
            lines: text
                .lines()
                .map(|line| ConsoleLine {
                    at: Duration::ZERO,
                    text: line.trim_end_matches('\r').to_string(),
                })
                .collect(),
        }
    }

    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(|line| line.text.as_str())
    }

    /// Index of the first line containing `needle`.
    pub fn position(&self, needle: &str) -> Option<usize> {
        self.texts().position(|text| text.contains(needle))
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.position(needle).is_some()
    }

    /// For each line containing `marker`, the rest of the line from the
    /// marker on (so a kmsg `[    1.234567] ` prefix does not matter).
    pub fn messages<'a>(&'a self, marker: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.texts()
            .filter_map(move |text| text.find(marker).map(|start| &text[start..]))
    }

    /// The last `count` lines as text, for error messages.
    pub fn tail(&self, count: usize) -> String {
        let skip = self.lines.len().saturating_sub(count);
        self.texts().skip(skip).collect::<Vec<_>>().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_start_at_the_marker() {
        let console = Console::from_text("[    1.000000] kios: power off\r\nnoise\nkios: x\n");
        let messages: Vec<&str> = console.messages("kios: ").collect();
        assert_eq!(messages, ["kios: power off", "kios: x"]);
        assert_eq!(console.position("noise"), Some(1));
        assert_eq!(console.tail(2), "noise\nkios: x");
    }
}
