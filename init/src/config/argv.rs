//! A fixed-size argument vector: arguments stored NUL-terminated in one
//! byte arena, ready to hand to execve without copying.

/// Too many arguments or bytes for the arena.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ArgvFull;

/// Up to `N` arguments in `BYTES` bytes (NUL terminators included).
pub struct Argv<const BYTES: usize, const N: usize> {
    bytes: heapless::Vec<u8, BYTES>,
    ends: heapless::Vec<usize, N>,
}

/// The kubelet's argv: its flags can carry a few KiB of node labels.
pub type KubeletArgv = Argv<8192, 32>;

impl<const BYTES: usize, const N: usize> Default for Argv<BYTES, N> {
    fn default() -> Self {
        Argv {
            bytes: heapless::Vec::new(),
            ends: heapless::Vec::new(),
        }
    }
}

impl<const BYTES: usize, const N: usize> Argv<BYTES, N> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one argument made of `parts` joined together
    /// (`push(&["--node-ip=", ip])`). On overflow nothing is appended.
    pub fn push(&mut self, parts: &[&str]) -> Result<(), ArgvFull> {
        let len: usize = parts.iter().map(|part| part.len()).sum();
        if self.ends.is_full() || self.bytes.len() + len + 1 > BYTES {
            return Err(ArgvFull);
        }
        for part in parts {
            self.bytes
                .extend_from_slice(part.as_bytes())
                .map_err(|_| ArgvFull)?;
        }
        self.bytes.push(0).map_err(|_| ArgvFull)?;
        self.ends.push(self.bytes.len()).map_err(|_| ArgvFull)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Each argument with its NUL terminator, as execve wants it.
    pub fn iter_with_nul(&self) -> impl Iterator<Item = &[u8]> {
        let starts = core::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.bytes[start..end])
    }

    /// Each argument as text.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.iter_with_nul().map(|arg| {
            core::str::from_utf8(arg.split_last().map_or(arg, |(_, text)| text)).unwrap_or("")
        })
    }

    /// Whether any argument equals `arg`.
    pub fn contains(&self, arg: &str) -> bool {
        self.iter().any(|existing| existing == arg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_joined_and_nul_terminated() {
        let mut argv: Argv<64, 4> = Argv::new();
        argv.push(&["/bin/kubelet"]).unwrap();
        argv.push(&["--node-ip=", "10.0.2.15"]).unwrap();
        assert_eq!(
            argv.iter().collect::<Vec<_>>(),
            ["/bin/kubelet", "--node-ip=10.0.2.15"]
        );
        assert_eq!(
            argv.iter_with_nul().nth(1).unwrap(),
            b"--node-ip=10.0.2.15\0"
        );
    }

    #[test]
    fn overflow_is_refused_and_leaves_the_argv_intact() {
        let mut argv: Argv<16, 2> = Argv::new();
        argv.push(&["0123456789"]).unwrap();
        assert_eq!(argv.push(&["0123456789"]), Err(ArgvFull));
        argv.push(&["abc"]).unwrap();
        assert_eq!(argv.push(&["x"]), Err(ArgvFull));
        assert_eq!(argv.iter().collect::<Vec<_>>(), ["0123456789", "abc"]);
    }
}
