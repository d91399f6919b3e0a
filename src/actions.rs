//! Drain actions: `--on-drain CMD` (run when a drain starts, beside the
//! delay), `--stop-command CMD` (run instead of sending the stop signal when
//! the delay ends) and `--on-drain-post URL` (an HTTP POST when a drain
//! starts, for images without curl).
//!
//! This part is what the options say: a command is split into words once,
//! at start, as a shell would split it but with no expansion at all (no
//! variables, no globs, no `~`); a shell runs only when the command names
//! one (`sh -c '...'`). And it is checked at start: a command that is not
//! there (or not executable) is drainit's error (125) then, not a surprise
//! at the drain, when nobody watches.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::Duration;

use crate::error::Error;
use crate::health::Url;
use crate::text::Escaped;

/// How much before the kill deadline drainit SIGKILLs the actions that still
/// run (at most half the time from the drain's start to the deadline).
pub const KILL_MARGIN: Duration = Duration::from_millis(500);
/// The longest an `--on-drain-post` may take.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// When, counted from the drain's start, drainit SIGKILLs the process group
/// of every action that still runs: `KILL_MARGIN` before the kill deadline
/// (`kill_at`, counted the same way), or halfway to it if that is sooner.
/// `None` without a kill deadline: actions then end when the app does.
pub fn kill_at(kill_at: Option<Duration>) -> Option<Duration> {
    let kill_at = kill_at?;
    let half = kill_at.checked_div(2).unwrap_or_default();
    Some(kill_at.saturating_sub(KILL_MARGIN.min(half)))
}

/// How long an `--on-drain-post` started at `at` (from the drain's start)
/// may take: until the actions' SIGKILL, and at most `POST_TIMEOUT`.
pub fn post_timeout(kill_after: Option<Duration>, at: Duration) -> Duration {
    kill_at(kill_after).map_or(POST_TIMEOUT, |k| k.saturating_sub(at).min(POST_TIMEOUT))
}

/// The drain actions the options ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// `--on-drain`.
    pub on_drain: Option<Command>,
    /// `--stop-command`.
    pub stop_command: Option<Command>,
    /// `--on-drain-post`.
    pub post: Option<Url>,
}

impl Actions {
    pub fn any(&self) -> bool {
        self.on_drain.is_some() || self.stop_command.is_some() || self.post.is_some()
    }
}

/// Where a value came from, for the lines that refuse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct From {
    pub flag: &'static str,
    /// The variable, when the value came from it.
    pub var: Option<&'static str>,
}

impl From {
    /// `--stop-command: PROBLEM (from DRAINIT_STOP_COMMAND)`.
    pub fn refuse(&self, problem: impl std::fmt::Display) -> Error {
        let origin = self
            .var
            .map(|var| format!(" (from {var})"))
            .unwrap_or_default();
        Error::Usage(format!("{}: {problem}{origin}", self.flag))
    }
}

/// A command of a drain action: its words, and where it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub argv: Vec<OsString>,
    pub from: From,
}

impl Command {
    /// Splits `text` into words (see [`split`]); the refusal names the option
    /// (and the variable, if the text came from one).
    pub fn parse(text: &OsStr, from: From) -> Result<Command, Error> {
        let argv = split(text.as_bytes()).map_err(|e| from.refuse(e))?;
        Ok(Command { argv, from })
    }

    /// The command as one readable line, quoted where a word needs it.
    pub fn shown(&self) -> String {
        self.argv
            .iter()
            .map(|word| quoted(word.as_bytes()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// At start: the program must be there and executable, as an `execvp`
    /// with drainit's `PATH` would find it. Not found or not executable:
    /// drainit's error (125), naming the option.
    pub fn check(&self) -> Result<(), Error> {
        let Some(program) = self.argv.first() else {
            return Err(self.from.refuse("the command is empty"));
        };
        let shown = Escaped(program.as_bytes());
        if program.as_bytes().contains(&b'/') {
            let path = Path::new(program);
            return match executable(path) {
                Ok(()) => Ok(()),
                Err(why) => Err(self.from.refuse(format!("{shown}: {why}"))),
            };
        }
        let search = std::env::var_os("PATH")
            .map_or_else(|| crate::sys::DEFAULT_PATH.to_vec(), OsString::into_vec);
        let mut denied = None;
        for dir in search.split(|b| *b == b':') {
            let path = Path::new(OsStr::from_bytes(dir)).join(program);
            match executable(&path) {
                Ok(()) => return Ok(()),
                Err(Why::NotExecutable) => denied = denied.or(Some(path)),
                Err(Why::Missing | Why::NotAFile) => {}
            }
        }
        Err(self.from.refuse(match denied {
            Some(path) => format!("{} is not executable", crate::text::path(&path)),
            None => format!("command '{shown}' not found in PATH ({})", Escaped(&search)),
        }))
    }
}

/// Why a path cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    Missing,
    NotAFile,
    NotExecutable,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Why::Missing => "no such file",
            Why::NotAFile => "not a file",
            Why::NotExecutable => "not executable",
        })
    }
}

/// Whether `path` is a file drainit may execute.
fn executable(path: &Path) -> Result<(), Why> {
    let meta = std::fs::metadata(path).map_err(|_| Why::Missing)?;
    if !meta.is_file() {
        return Err(Why::NotAFile);
    }
    if crate::sys::may_execute(path) {
        Ok(())
    } else {
        Err(Why::NotExecutable)
    }
}

/// Splits a command into words, once, as a POSIX shell splits words but with
/// no expansion: blanks (space, tab, newline) separate words; `'...'` keeps
/// everything in it as it is; `"..."` too, but for `\"`, `\\`, `\$` and
/// `` \` ``; a backslash outside quotes keeps the next byte as it is. Quoted
/// parts and the rest of a word join up (`a'b c'` is one word, `ab c`), and
/// `''` is an empty word. Nothing else is special: `$HOME`, `*`, `~`, `;`,
/// `|` and `>` are plain characters (a shell runs only if the command names
/// one: `sh -c '...'`).
pub fn split(text: &[u8]) -> Result<Vec<OsString>, String> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum In {
        Blank,
        Word,
        Single,
        Double,
    }
    let mut words = Vec::new();
    let mut word = Vec::new();
    let mut state = In::Blank;
    let mut bytes = text.iter().copied();
    while let Some(b) = bytes.next() {
        match (state, b) {
            (In::Blank | In::Word, b' ' | b'\t' | b'\n') => {
                if state == In::Word {
                    words.push(OsString::from_vec(std::mem::take(&mut word)));
                }
                state = In::Blank;
            }
            (In::Blank | In::Word, b'\'') => state = In::Single,
            (In::Blank | In::Word, b'"') => state = In::Double,
            (In::Blank | In::Word, b'\\') => {
                let next = bytes.next().ok_or(
                    "the command ends with a lone backslash (quote it: '\\\\' or \"\\\\\")",
                )?;
                // As in a shell, a backslash before a newline joins the lines.
                if next != b'\n' {
                    word.push(next);
                }
                state = In::Word;
            }
            (In::Blank | In::Word, b) => {
                word.push(b);
                state = In::Word;
            }
            (In::Single, b'\'') | (In::Double, b'"') => state = In::Word,
            (In::Double, b'\\') => match bytes.next() {
                Some(next @ (b'"' | b'\\' | b'$' | b'`')) => word.push(next),
                Some(b'\n') => {}
                Some(next) => word.extend_from_slice(&[b'\\', next]),
                None => break,
            },
            (In::Single | In::Double, b) => word.push(b),
        }
    }
    match state {
        In::Single => return Err(unbalanced('\'')),
        In::Double => return Err(unbalanced('"')),
        In::Word => words.push(OsString::from_vec(word)),
        In::Blank => {}
    }
    if words.is_empty() {
        return Err("the command is empty".to_string());
    }
    Ok(words)
}

fn unbalanced(quote: char) -> String {
    format!(
        "unbalanced {quote} (the command is split into words as a shell would, without expansion: quotes must pair up)"
    )
}

/// A word as the command line would take it back: as it is when it has
/// nothing special, else in single quotes; control bytes escaped.
fn quoted(word: &[u8]) -> String {
    let plain = !word.is_empty()
        && word
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(b) || !b.is_ascii());
    if plain {
        return Escaped(word).to_string();
    }
    let mut out = String::from("'");
    for (i, part) in word.split(|b| *b == b'\'').enumerate() {
        if i > 0 {
            out.push_str("'\\''");
        }
        out.push_str(&Escaped(part).to_string());
    }
    out.push('\'');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        split(text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|w| w.into_string().unwrap())
            .collect()
    }

    #[test]
    fn actions_are_killed_before_the_kill_deadline() {
        let ms = Duration::from_millis;
        assert_eq!(kill_at(None), None);
        assert_eq!(kill_at(Some(ms(29_000))), Some(ms(28_500)));
        assert_eq!(kill_at(Some(ms(600))), Some(ms(300)));
        assert_eq!(kill_at(Some(ms(1))), Some(ms(1) - ms(1) / 2));
        assert_eq!(kill_at(Some(Duration::ZERO)), Some(Duration::ZERO));
        assert!(kill_at(Some(Duration::MAX)).is_some());
        assert_eq!(post_timeout(None, Duration::ZERO), POST_TIMEOUT);
        assert_eq!(post_timeout(Some(ms(3000)), Duration::ZERO), ms(2500));
        assert_eq!(post_timeout(Some(ms(60_000)), Duration::ZERO), POST_TIMEOUT);
        assert_eq!(post_timeout(Some(ms(3000)), ms(2900)), Duration::ZERO);
    }

    #[test]
    fn splits_words_as_a_shell_would_without_expansion() {
        let cases: &[(&str, &[&str])] = &[
            ("nginx -s quit", &["nginx", "-s", "quit"]),
            ("  a\t b \n c  ", &["a", "b", "c"]),
            (
                "sh -c 'curl -X POST localhost:9901/drain_listeners'",
                &["sh", "-c", "curl -X POST localhost:9901/drain_listeners"],
            ),
            (r#"echo "a \"b\" \\ \$x \n""#, &["echo", r#"a "b" \ $x \n"#]),
            ("a'b c'd", &["ab cd"]),
            ("x '' y", &["x", "", "y"]),
            (r#""""#, &[""]),
            (r"a\ b \'c", &["a b", "'c"]),
            (
                "echo $HOME ~ * ; | >",
                &["echo", "$HOME", "~", "*", ";", "|", ">"],
            ),
            ("a\\\nb", &["ab"]),
            ("'it'\\''s'", &["it's"]),
        ];
        for (text, want) in cases {
            assert_eq!(words(text), *want, "{text:?}");
        }
        // Bytes that are not UTF-8 go through as they are.
        assert_eq!(
            split(b"cat \xff\xfe").unwrap(),
            [
                OsString::from("cat"),
                OsString::from_vec(b"\xff\xfe".to_vec())
            ]
        );
    }

    #[test]
    fn refuses_what_cannot_be_split() {
        for (text, want) in [
            ("", "the command is empty"),
            ("   \t\n", "the command is empty"),
            ("sh -c 'echo", "unbalanced '"),
            ("echo \"a", "unbalanced \""),
            ("echo 'a\"", "unbalanced '"),
            ("echo a\\", "lone backslash"),
        ] {
            let e = split(text.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{text:?}: one line: {e}");
        }
    }

    #[test]
    fn shows_a_command_so_that_it_splits_back_the_same() {
        for text in [
            "nginx -s quit",
            "sh -c 'echo \"hi there\"; exit 3'",
            "x '' y",
            "'it'\\''s'",
            "a\\ b",
        ] {
            let command = Command {
                argv: split(text.as_bytes()).unwrap(),
                from: From {
                    flag: "--on-drain",
                    var: None,
                },
            };
            let shown = command.shown();
            assert_eq!(
                split(shown.as_bytes()).unwrap(),
                command.argv,
                "{text:?} -> {shown}"
            );
        }
        let command = Command {
            argv: vec!["a\nb\x1b".into()],
            from: From {
                flag: "--on-drain",
                var: None,
            },
        };
        assert_eq!(command.shown(), "'a\\nb\\u{1b}'");
    }

    #[test]
    fn a_refusal_names_the_option_and_the_variable() {
        let from = From {
            flag: "--stop-command",
            var: Some("DRAINIT_STOP_COMMAND"),
        };
        let e = Command::parse(OsStr::new("nginx 'quit"), from).unwrap_err();
        assert_eq!(e.exit_code(), 125);
        let e = e.to_string();
        assert!(e.starts_with("--stop-command: unbalanced '"), "{e}");
        assert!(e.ends_with(" (from DRAINIT_STOP_COMMAND)"), "{e}");
    }

    #[test]
    fn checks_that_the_program_is_there_and_executable() {
        let from = From {
            flag: "--on-drain",
            var: None,
        };
        let cmd = |w: &str| Command {
            argv: vec![w.into()],
            from,
        };
        assert!(cmd("sh").check().is_ok());
        assert!(cmd("/bin/sh").check().is_ok());
        let e = cmd("drainit-no-such-program")
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--on-drain: command 'drainit-no-such-program' not found in PATH"),
            "{e}"
        );
        let e = cmd("/no/such/file").check().unwrap_err().to_string();
        assert_eq!(e, "--on-drain: /no/such/file: no such file");
        let e = cmd("/").check().unwrap_err().to_string();
        assert_eq!(e, "--on-drain: /: not a file");
    }
}
