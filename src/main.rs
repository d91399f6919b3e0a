//! drainit: a small static PID 1 for containers.
//!
//! The entry point: parse, set up logging, run, and turn the result into the
//! exit code.

#![cfg_attr(not(test), no_main)]
// Nothing in PID 1 may panic (a panic is its death, and the container's, with
// no drain): no unchecked arithmetic, no indexing that can fail, no unwrap or
// expect, and no print macros (they panic when a write fails). Tests may.
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing,
        clippy::print_stdout,
        clippy::print_stderr,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

mod actions;
mod cli;
mod drain;
mod drainfile;
mod error;
mod exit;
mod explain;
#[cfg(feature = "gen-docs")]
mod gen_docs;
mod health;
mod listener;
mod output;
mod preflight;
mod procfs;
mod signals;
mod spawn;
mod supervisor;
#[allow(unsafe_code)]
mod sys;
mod text;
mod time;
mod tini;
mod traffic;

use std::ffi::OsString;

use cli::{Mode, Parsed};

/// The program entry point, and the only `process::exit`.
///
/// drainit has no Rust `fn main`: Rust's runtime start-up would set SIGPIPE to
/// "ignore" before any of our code runs, and the app must inherit exactly the
/// dispositions drainit was started with. So the C runtime calls this `main`.
#[cfg(not(test))]
#[allow(unsafe_code)] // `no_mangle` is an unsafe attribute; the function body has no unsafe.
#[unsafe(no_mangle)]
pub extern "C" fn main(
    argc: std::ffi::c_int,
    argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    let args = sys::args_from_c(argc, argv);
    #[cfg(feature = "gen-docs")]
    if let Some(code) = gen_docs::run(&args) {
        std::process::exit(code)
    }
    // Under a small stack limit (`ulimit -s 16`), on a stack of its own.
    let code = match sys::on_a_stack_that_fits(|| run(args)) {
        Ok(code) => code,
        Err(source) => {
            let e = error::Error::Setup {
                what: "map a stack of its own (the stack limit is under 256 KiB)",
                source,
            };
            output::refuse(&e);
            e.exit_code()
        }
    };
    // What stderr could not take in time, counted, if it can take that now.
    output::finish();
    std::process::exit(code)
}

#[cfg_attr(test, allow(dead_code))]
fn run(args: Vec<OsString>) -> i32 {
    // First of all: from here on no signal is lost, none stops drainit, and
    // none kills it before the app can be told.
    let inherited = match sys::take_over_signals() {
        Ok(inherited) => inherited,
        Err(source) => {
            let e = error::Error::Setup {
                what: "block signals",
                source,
            };
            output::refuse(&e);
            return e.exit_code();
        }
    };
    let vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    // Run as `docker-init` or `tini`: tini's flags and default (tini.rs).
    let args = match tini::translate(args, &cli::Env(&vars)) {
        Ok(args) => args,
        Err(e) => {
            output::refuse(&e);
            return e.exit_code();
        }
    };
    let config = match cli::parse(args, &cli::Env(&vars)) {
        Ok(Parsed::Config(config)) => config,
        Ok(Parsed::Print(text)) => return printed(&text),
        Err(e) => {
            output::refuse(&e);
            return e.exit_code();
        }
    };
    if !matches!(config.mode, Mode::Explain(_)) {
        // Before drainit opens anything: a closed 0, 1 or 2 would be taken by
        // its first socket, and its log lines (or the health check's answer)
        // would go to a network peer. (`--explain`, like `--help`, opens
        // nothing, and a closed stdout stays an error for it.)
        sys::occupy_stdio();
    }
    if !matches!(config.mode, Mode::Run(_)) {
        // Only run mode keeps the signals: a health check or --explain ends
        // on SIGTERM like any other program.
        sys::restore(inherited);
    }
    output::init_logging(config.log);
    for name in cli::unknown_variables(vars.into_iter().map(|(name, _)| name)) {
        log::warn!("{}", preflight::unknown_variable_warning(&name));
    }
    // What the options point at, checked before anything runs (--explain too).
    if let Mode::Run(launch) | Mode::Explain(launch) = &config.mode
        && let Err(e) = preflight::check(launch)
    {
        output::refuse(&e);
        return e.exit_code();
    }
    match config.mode {
        Mode::Healthcheck(health) => {
            let (healthy, reason) = health::check(&health);
            // The answer is the exit code; the line is a courtesy.
            let _ = output::print(&format!("{reason}\n"));
            i32::from(!healthy)
        }
        Mode::Explain(launch) => printed(&explain::timeline(&launch)),
        Mode::Run(launch) => success_exit(
            supervisor::supervise(&launch, inherited),
            config.success_exit.as_ref(),
        ),
    }
}

/// `--success-exit`: the app's listed exit codes become 0. drainit's own
/// codes (125-127) and 137 cannot be listed (see `cli::SuccessExit::parse`),
/// so only a code the app itself ended with is ever turned.
fn success_exit(code: i32, success: Option<&cli::SuccessExit>) -> i32 {
    match success {
        Some(success) if code != 0 && success.contains(code) => {
            log::info!(
                "the app's exit code {code} counts as success ({}): exiting 0",
                success.from
            );
            0
        }
        _ => code,
    }
}

/// 0 once `text` is on stdout; 125 if it could not be written.
fn printed(text: &str) -> i32 {
    match output::print(text) {
        Ok(()) => 0,
        Err(_) => exit::OWN_ERROR,
    }
}
