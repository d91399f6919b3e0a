//! drainit's own errors. Each knows its exit code and prints as one line.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;

use crate::exit;

#[derive(Debug)]
pub enum Error {
    /// A bad option, value or combination; the text names it.
    Usage(String),
    /// The command could not be started (not found, not executable, ...).
    Spawn {
        command: OsString,
        source: io::Error,
        /// The command exists but what runs it does not (`#!` interpreter,
        /// dynamic loader, or `/bin/sh` for a script without `#!`).
        missing: Option<crate::spawn::Interpreter>,
    },
    /// Setting up drainit itself failed before the app was started.
    Setup {
        what: &'static str,
        source: io::Error,
    },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Setup { .. } => exit::OWN_ERROR,
            Error::Spawn { source, .. } => exit::for_spawn_error(source),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(text) => f.write_str(text),
            Error::Spawn {
                missing: Some(interpreter),
                ..
            } => write!(f, "{interpreter}"),
            Error::Spawn {
                command, source, ..
            } => {
                let what = match exit::for_spawn_error(source) {
                    exit::NOT_FOUND => "command not found",
                    exit::NOT_EXECUTABLE => "command cannot be executed",
                    _ => "cannot start command",
                };
                write!(
                    f,
                    "{what}: {}: {}",
                    crate::text::Escaped(command.as_bytes()),
                    os_reason(source)
                )
            }
            Error::Setup { what, source } => write!(f, "cannot {what}: {}", os_reason(source)),
        }
    }
}

/// An error as drainit words it everywhere, after a colon: one short phrase
/// in lower case, `permission denied`, not `Permission denied (os error 13)`.
/// Every `io::Error` drainit shows goes through here.
pub fn os_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => strip_os_error(&io::Error::from_raw_os_error(n).to_string()).to_lowercase(),
        // drainit's own words (they may hold a path): as they are.
        None => strip_os_error(&e.to_string()).to_string(),
    }
}

/// `No such file or directory (os error 2)` → `No such file or directory`.
fn strip_os_error(text: &str) -> &str {
    text.split(" (os error").next().unwrap_or(text)
}

/// An `io::Error` shown the way [`os_reason`] words it: `{}` in a message.
pub struct Reason<'a>(pub &'a io::Error);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&os_reason(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_knows_its_code_and_says_one_line() {
        let nf = Error::Spawn {
            command: "nope".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
            missing: None,
        };
        assert_eq!(nf.exit_code(), 127);
        assert_eq!(
            nf.to_string(),
            "command not found: nope: no such file or directory"
        );
        let ne = Error::Spawn {
            command: "/etc".into(),
            source: io::Error::from_raw_os_error(libc::EACCES),
            missing: None,
        };
        assert_eq!(ne.exit_code(), 126);
        assert!(
            ne.to_string()
                .starts_with("command cannot be executed: /etc: ")
        );
        let usage = Error::Usage("--drain-delay: bad".into());
        assert_eq!(usage.exit_code(), 125);
        let setup = Error::Setup {
            what: "create a signalfd",
            source: io::Error::from_raw_os_error(libc::EMFILE),
        };
        assert_eq!(setup.exit_code(), 125);
        assert!(!setup.to_string().contains('\n'));
    }
}
