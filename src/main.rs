//! drainit: a small static PID 1 for containers.
//!
//! The entry point: parse, set up logging, run, and turn the result into the
//! exit code.

#![cfg_attr(not(test), no_main)]

mod cli;
mod drain;
mod drainfile;
mod error;
mod exit;
mod explain;
mod health;
mod procfs;
mod signals;
mod spawn;
mod supervisor;
#[allow(unsafe_code)]
mod sys;
mod text;
mod time;

use std::ffi::OsString;
use std::io::Write;

use cli::{LogLevel, Mode, Parsed};

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
    std::process::exit(run(sys::args_from_c(argc, argv)))
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
            eprintln!("drainit: {e}");
            return e.exit_code();
        }
    };
    let config = match cli::parse(args) {
        Ok(Parsed::Config(config)) => config,
        Ok(Parsed::Print(text)) => {
            let mut out = std::io::stdout().lock();
            return if out
                .write_all(text.as_bytes())
                .and_then(|_| out.flush())
                .is_ok()
            {
                0
            } else {
                exit::OWN_ERROR
            };
        }
        Err(e) => {
            eprintln!("drainit: {e}");
            return e.exit_code();
        }
    };
    if !matches!(config.mode, Mode::Run(_)) {
        // Only run mode keeps the signals: a health check or --explain ends
        // on SIGTERM like any other program.
        sys::restore(inherited);
    }
    init_logging(config.log);
    for name in cli::unknown_variables(std::env::vars_os().map(|(name, _)| name)) {
        log::warn!(
            "ignoring unknown variable {name} (see drainit --help for the DRAINIT_* variables)"
        );
    }
    match config.mode {
        Mode::Healthcheck(health) => {
            let (healthy, reason) = health::check(&health);
            println!("{reason}");
            i32::from(!healthy)
        }
        Mode::Explain(launch) => {
            print!("{}", explain::timeline(&launch));
            0
        }
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

/// Logs go to stderr (stdout belongs to the app), one line each, prefixed
/// with the program name. `DRAINIT_LOG` takes an env_logger filter.
fn init_logging(level: LogLevel) {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(match level {
        LogLevel::Quiet => log::LevelFilter::Warn,
        LogLevel::Normal => log::LevelFilter::Info,
        LogLevel::Verbose => log::LevelFilter::Debug,
    });
    if let Ok(filter) = std::env::var("DRAINIT_LOG") {
        builder.parse_filters(&filter);
    }
    builder.format(|buf, record| {
        let level = match record.level() {
            log::Level::Info => "",
            log::Level::Warn => "warning: ",
            log::Level::Error => "error: ",
            log::Level::Debug => "debug: ",
            log::Level::Trace => "trace: ",
        };
        writeln!(buf, "drainit: {level}{}", record.args())
    });
    builder.target(env_logger::Target::Stderr);
    let _ = builder.try_init();
}
