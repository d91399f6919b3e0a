//! The man page and shell completions, written from the clap definitions in
//! `cli.rs` so that they never disagree with `--help`. Only compiled with the
//! `gen-docs` feature, which `make dist` (scripts/dist.sh) builds on its own:
//! a release binary has none of this, nor clap_mangen or clap_complete.
//!
//! `drainit --gen-docs DIR DATE` writes `DIR/drainit.1` (dated DATE, so that
//! the page is reproducible) and `DIR/completions/{drainit.bash,_drainit,drainit.fish}`.

// entry() is dead code in test builds, and so is what only it calls.
#![cfg_attr(test, allow(dead_code))]

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

/// `Some(exit code)` when `args` ask for the docs; `None` to run drainit as usual.
pub fn run(args: &[OsString]) -> Option<i32> {
    let mut rest = args.iter().skip(1);
    if rest.next().is_none_or(|a| a != "--gen-docs") {
        return None;
    }
    let (Some(dir), Some(date), None) = (rest.next(), rest.next(), rest.next()) else {
        return Some(fail("usage: drainit --gen-docs DIR DATE"));
    };
    Some(match write_all(Path::new(dir), &date.to_string_lossy()) {
        Ok(()) => 0,
        Err(e) => fail(&format!(
            "cannot write the docs into {}: {e}",
            dir.to_string_lossy()
        )),
    })
}

fn fail(message: &str) -> i32 {
    let _ = writeln!(std::io::stderr(), "drainit: error: {message}");
    crate::exit::OWN_ERROR
}

fn write_all(dir: &Path, date: &str) -> std::io::Result<()> {
    let cmd = crate::cli::Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .date(date)
        .source(format!("drainit {}", env!("CARGO_PKG_VERSION")))
        .manual("User Commands")
        .render(&mut page)?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("drainit.1"), page)?;

    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    for (shell, file) in [
        (Shell::Bash, "drainit.bash"),
        (Shell::Zsh, "_drainit"),
        (Shell::Fish, "drainit.fish"),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "drainit", &mut script);
        std::fs::write(completions.join(file), script)?;
    }
    Ok(())
}
