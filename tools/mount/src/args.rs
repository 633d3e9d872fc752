//! A getopt_long-style walk over argv, as util-linux parses it: short
//! options cluster (`-lf`) and take their argument attached or next
//! (`-ttmpfs`, `-t tmpfs`), long options take `--name=value` or
//! `--name value` and may be cut to an unambiguous prefix, operands may
//! come between options, and `--` ends the options.

use core::ffi::CStr;

/// One option a command knows.
pub struct Spec<Id> {
    /// The short letter, or 0 for a long-only option.
    pub short: u8,
    /// The long name without `--`, or "" for a short-only option.
    pub long: &'static str,
    /// Takes an argument.
    pub takes_value: bool,
    pub id: Id,
}

/// What the walk found, in argv order.
#[derive(Debug, PartialEq, Eq)]
pub enum Token<'a, Id> {
    Option(Id, Option<&'a CStr>),
    Operand(&'a CStr),
}

/// An argv the commands cannot run, worded by [`crate::message::usage`].
#[derive(Debug, PartialEq, Eq)]
pub enum UsageError<'a> {
    /// `--name` that no option has (the whole argument, `--` included).
    UnrecognizedOption(&'a [u8]),
    /// A short letter that no option has.
    InvalidOption(u8),
    /// `--name` that several options begin with.
    AmbiguousOption(&'a [u8]),
    /// An option that takes an argument came last.
    MissingShortValue(u8),
    MissingLongValue(&'static str),
    /// `--name=value` for an option that takes none.
    UnexpectedValue(&'static str),
    /// Operands that fit no form of the command.
    BadUsage,
    /// `mount TARGET` without a source: util-linux looks TARGET up in
    /// /etc/fstab, which a kiOS node does not have.
    NotInFstab(&'a CStr),
    /// A feature util-linux has and this command leaves out, with why.
    Unsupported {
        what: &'static str,
        why: &'static str,
    },
    /// More filesystem options than one mount(2) call carries.
    OptionsTooLong,
}

/// The suffix of `arg` from byte `start` on, still NUL-terminated.
fn tail(arg: &CStr, start: usize) -> &CStr {
    let bytes = arg.to_bytes_with_nul();
    CStr::from_bytes_with_nul(&bytes[start..]).unwrap_or(c"")
}

fn find_long<'s, Id>(specs: &'s [Spec<Id>], name: &[u8]) -> Result<&'s Spec<Id>, UsageErrorKind> {
    if let Some(exact) = specs
        .iter()
        .find(|spec| !spec.long.is_empty() && spec.long.as_bytes() == name)
    {
        return Ok(exact);
    }
    let mut found = None;
    for spec in specs
        .iter()
        .filter(|spec| spec.long.as_bytes().starts_with(name) && !spec.long.is_empty())
    {
        if found.is_some() {
            return Err(UsageErrorKind::Ambiguous);
        }
        found = Some(spec);
    }
    found.ok_or(UsageErrorKind::Unrecognized)
}

enum UsageErrorKind {
    Unrecognized,
    Ambiguous,
}

/// Walks `args` (argv without argv[0]), handing each option and operand to `each`.
pub fn walk<'a, Id: Copy>(
    args: &[&'a CStr],
    specs: &[Spec<Id>],
    mut each: impl FnMut(Token<'a, Id>) -> Result<(), UsageError<'a>>,
) -> Result<(), UsageError<'a>> {
    let mut index = 0;
    let mut options_ended = false;
    while index < args.len() {
        let arg: &'a CStr = args[index];
        index += 1;
        let bytes: &'a [u8] = arg.to_bytes();
        if options_ended || bytes.len() < 2 || bytes[0] != b'-' {
            each(Token::Operand(arg))?;
            continue;
        }
        if bytes == b"--" {
            options_ended = true;
            continue;
        }
        if let Some(long) = bytes.strip_prefix(b"--") {
            let (name, inline) = match long.iter().position(|&b| b == b'=') {
                Some(eq) => (&long[..eq], Some(tail(arg, 2 + eq + 1))),
                None => (long, None),
            };
            let spec = match find_long(specs, name) {
                Ok(spec) => spec,
                Err(UsageErrorKind::Ambiguous) => return Err(UsageError::AmbiguousOption(bytes)),
                Err(UsageErrorKind::Unrecognized) => {
                    return Err(UsageError::UnrecognizedOption(bytes))
                }
            };
            let value = match (spec.takes_value, inline) {
                (true, Some(value)) => Some(value),
                (true, None) => match args.get(index) {
                    Some(next) => {
                        index += 1;
                        Some(*next)
                    }
                    None => return Err(UsageError::MissingLongValue(spec.long)),
                },
                (false, Some(_)) => return Err(UsageError::UnexpectedValue(spec.long)),
                (false, None) => None,
            };
            each(Token::Option(spec.id, value))?;
            continue;
        }
        // A cluster of short options: `-lf`, `-ttmpfs`, `-o` `ro`.
        let mut at = 1;
        while at < bytes.len() {
            let letter = bytes[at];
            at += 1;
            let spec = specs
                .iter()
                .find(|spec| spec.short != 0 && spec.short == letter)
                .ok_or(UsageError::InvalidOption(letter))?;
            if !spec.takes_value {
                each(Token::Option(spec.id, None))?;
                continue;
            }
            let value = if at < bytes.len() {
                tail(arg, at)
            } else {
                match args.get(index) {
                    Some(next) => {
                        index += 1;
                        *next
                    }
                    None => return Err(UsageError::MissingShortValue(letter)),
                }
            };
            each(Token::Option(spec.id, Some(value)))?;
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Id {
        Types,
        Lazy,
        Force,
        NoCanonicalize,
        NoMtab,
    }

    const SPECS: &[Spec<Id>] = &[
        Spec {
            short: b't',
            long: "types",
            takes_value: true,
            id: Id::Types,
        },
        Spec {
            short: b'l',
            long: "lazy",
            takes_value: false,
            id: Id::Lazy,
        },
        Spec {
            short: b'f',
            long: "force",
            takes_value: false,
            id: Id::Force,
        },
        Spec {
            short: b'c',
            long: "no-canonicalize",
            takes_value: false,
            id: Id::NoCanonicalize,
        },
        Spec {
            short: b'n',
            long: "no-mtab",
            takes_value: false,
            id: Id::NoMtab,
        },
    ];

    fn tokens<'a>(args: &[&'a CStr]) -> Result<Vec<Token<'a, Id>>, UsageError<'a>> {
        let mut found = Vec::new();
        walk(args, SPECS, |token| {
            found.push(token);
            Ok(())
        })?;
        Ok(found)
    }

    #[test]
    fn short_options_cluster_and_take_attached_or_next_values() {
        assert_eq!(
            tokens(&[c"-lf", c"-ttmpfs", c"-t", c"proc", c"/x"]).unwrap(),
            [
                Token::Option(Id::Lazy, None),
                Token::Option(Id::Force, None),
                Token::Option(Id::Types, Some(c"tmpfs")),
                Token::Option(Id::Types, Some(c"proc")),
                Token::Operand(c"/x"),
            ]
        );
        assert_eq!(
            tokens(&[c"-lt", c"tmpfs"]).unwrap(),
            [
                Token::Option(Id::Lazy, None),
                Token::Option(Id::Types, Some(c"tmpfs"))
            ]
        );
    }

    #[test]
    fn long_options_take_equals_or_next_values_and_unique_prefixes() {
        assert_eq!(
            tokens(&[
                c"--types=tmpfs",
                c"--types",
                c"proc",
                c"--no-canon",
                c"--lazy"
            ])
            .unwrap(),
            [
                Token::Option(Id::Types, Some(c"tmpfs")),
                Token::Option(Id::Types, Some(c"proc")),
                Token::Option(Id::NoCanonicalize, None),
                Token::Option(Id::Lazy, None),
            ]
        );
        assert_eq!(
            tokens(&[c"--no"]),
            Err(UsageError::AmbiguousOption(b"--no"))
        );
    }

    #[test]
    fn operands_mix_with_options_until_double_dash() {
        assert_eq!(
            tokens(&[c"/a", c"-l", c"--", c"-f", c"-"]).unwrap(),
            [
                Token::Operand(c"/a"),
                Token::Option(Id::Lazy, None),
                Token::Operand(c"-f"),
                Token::Operand(c"-"),
            ]
        );
    }

    #[test]
    fn what_getopt_refuses() {
        assert_eq!(
            tokens(&[c"--frobnicate"]),
            Err(UsageError::UnrecognizedOption(b"--frobnicate"))
        );
        assert_eq!(tokens(&[c"-lz"]), Err(UsageError::InvalidOption(b'z')));
        assert_eq!(tokens(&[c"-t"]), Err(UsageError::MissingShortValue(b't')));
        assert_eq!(
            tokens(&[c"--types"]),
            Err(UsageError::MissingLongValue("types"))
        );
        assert_eq!(
            tokens(&[c"--lazy=yes"]),
            Err(UsageError::UnexpectedValue("lazy"))
        );
    }
}
