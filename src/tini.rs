//! tini's command line, when drainit is run under tini's names: `tini`,
//! `tini-static`, or `docker-init` (what `docker run --init` runs, with
//! `dockerd --init-path` pointed at drainit: the engine calls it as
//! `/sbin/docker-init -- COMMAND`).
//!
//! Under those names drainit takes tini's default: signals go to the app's
//! pid only (as `--no-group`), unless `-g`, `TINI_KILL_PROCESS_GROUP`, or a
//! `DRAINIT_NO_GROUP` set either way says otherwise. tini's flags that lead
//! the command line are read and turned into drainit's: `-g` (the group),
//! `-s` (nothing: drainit is always a subreaper), `-v`/`-w` (`-v`),
//! `-e CODE` (`--success-exit`); `-p` and `-l` are refused. drainit's own
//! options work as ever (`docker-init --healthcheck`). Under any other name,
//! the command line is drainit's alone.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::cli::{Env, NO_GROUP, SUCCESS_EXIT};
use crate::error::Error;
use crate::text::Escaped;

/// The names that make drainit read tini's command line.
const NAMES: [&[u8]; 3] = [b"tini", b"tini-static", b"docker-init"];

/// Whether `argv0` (a path or a name) is one of tini's names.
pub fn invoked_as_tini(argv0: &OsStr) -> bool {
    let bytes = argv0.as_bytes();
    let base = bytes.rsplit(|&b| b == b'/').next().unwrap_or(bytes);
    NAMES.contains(&base)
}

/// `args` (program name first) as drainit's command line: unchanged unless
/// drainit runs under one of tini's names.
pub fn translate(args: Vec<OsString>, env: &Env) -> Result<Vec<OsString>, Error> {
    let Some((argv0, rest)) = args.split_first() else {
        return Ok(args);
    };
    if !invoked_as_tini(argv0) {
        return Ok(args);
    }
    let mut group = false;
    let mut verbose = false;
    let mut codes: Vec<String> = Vec::new();
    let mut used = 0usize;
    let mut words = rest.iter();
    'words: while let Some(word) = words.next() {
        let bytes = word.as_bytes();
        // Only a leading run of short flags is tini's: `--`, a long option
        // or the command ends it.
        let Some(letters) = bytes.strip_prefix(b"-") else {
            break;
        };
        if letters.is_empty() || letters.starts_with(b"-") {
            break;
        }
        // What follows an `e` is its code (`-e143`).
        let flags = match letters.iter().position(|&l| l == b'e') {
            Some(at) => letters.get(..=at).unwrap_or(letters),
            None => letters,
        };
        if !flags.iter().all(|l| b"gsvwe".contains(l)) {
            // Not tini's (drainit's own -q, or -h): left to drainit.
            if flags.iter().any(|l| b"pl".contains(l)) {
                return Err(Error::Usage(format!(
                    "{}: tini's -p (a signal on parent death) and -l (print the license) are not supported by drainit",
                    Escaped(bytes)
                )));
            }
            break;
        }
        used = used.saturating_add(1);
        for (i, letter) in letters.iter().enumerate() {
            match letter {
                b'g' => group = true,
                b'v' | b'w' => verbose = true,
                b'e' => {
                    // `-e CODE` or `-eCODE`: the rest of the word, else the next one.
                    let glued = letters.get(i.saturating_add(1)..).unwrap_or_default();
                    let code = if glued.is_empty() {
                        used = used.saturating_add(1);
                        words.next().map(|w| w.as_bytes()).unwrap_or_default()
                    } else {
                        glued
                    };
                    if code.is_empty() {
                        return Err(Error::Usage(
                            "-e: tini's -e takes an exit code (as --success-exit)".into(),
                        ));
                    }
                    codes.push(Escaped(code).to_string());
                    continue 'words;
                }
                _ => {} // -s: drainit is always a subreaper.
            }
        }
    }
    let tini_group = env_set(env, "TINI_KILL_PROCESS_GROUP");
    let drainit_says = env_set(env, NO_GROUP.var);
    let mut out = vec![argv0.clone()];
    let remaining = rest.get(used..).unwrap_or_default();
    let given = |flag: &str| remaining.iter().any(|a| a.as_bytes() == flag.as_bytes());
    if !group && !tini_group && !drainit_says && !given(NO_GROUP.flag) {
        out.push(NO_GROUP.flag.into());
    }
    if verbose && !given("-v") && !given("--verbose") {
        out.push("-v".into());
    }
    if !codes.is_empty() {
        out.push(SUCCESS_EXIT.flag.into());
        out.push(codes.join(",").into());
    }
    out.extend(remaining.iter().cloned());
    Ok(out)
}

/// A variable set to something (an empty one counts as unset, as for drainit's).
fn env_set(env: &Env, name: &str) -> bool {
    env.0
        .iter()
        .any(|(n, v)| n.as_bytes() == name.as_bytes() && !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], vars: &[(&str, &str)]) -> Result<Vec<String>, String> {
        let vars: Vec<(OsString, OsString)> = vars
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect();
        translate(args.iter().map(OsString::from).collect(), &Env(&vars))
            .map(|v| v.iter().map(|a| a.to_string_lossy().into_owned()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn only_tinis_names_read_tinis_flags() {
        assert_eq!(
            run(&["drainit", "-g", "--", "app"], &[]).unwrap(),
            ["drainit", "-g", "--", "app"]
        );
        assert_eq!(
            run(&["/sbin/docker-init", "--", "app"], &[]).unwrap(),
            ["/sbin/docker-init", "--no-group", "--", "app"]
        );
        assert_eq!(
            run(&["tini", "-g", "-s", "--", "app", "-g"], &[]).unwrap(),
            ["tini", "--", "app", "-g"]
        );
        assert_eq!(
            run(&["/tini", "-sgvv", "-e", "143", "-e130", "--", "app"], &[]).unwrap(),
            ["/tini", "-v", "--success-exit", "143,130", "--", "app"]
        );
        assert_eq!(
            run(&["tini-static", "app", "-v"], &[]).unwrap(),
            ["tini-static", "--no-group", "app", "-v"]
        );
    }

    #[test]
    fn variables_can_ask_for_the_group() {
        for var in ["TINI_KILL_PROCESS_GROUP", "DRAINIT_NO_GROUP"] {
            assert_eq!(
                run(&["docker-init", "--", "app"], &[(var, "1")]).unwrap()[1],
                "--",
                "{var}"
            );
            assert_eq!(
                run(&["docker-init", "--", "app"], &[(var, "")]).unwrap()[1],
                "--no-group",
                "{var} empty"
            );
        }
    }

    #[test]
    fn drainits_own_options_pass_and_unsupported_flags_are_named() {
        assert_eq!(
            run(&["docker-init", "--healthcheck"], &[]).unwrap(),
            ["docker-init", "--no-group", "--healthcheck"]
        );
        assert_eq!(
            run(&["docker-init", "--no-group", "--", "app"], &[]).unwrap(),
            ["docker-init", "--no-group", "--", "app"]
        );
        for bad in ["-p", "-pSIGTERM", "-l"] {
            let e = run(&["tini", bad, "--", "app"], &[]).unwrap_err();
            assert!(e.starts_with(bad), "{e}");
        }
        assert!(run(&["tini", "-e"], &[]).is_err());
    }
}
