//! drainit: a small static PID 1 for containers.
//!
//! Parse, set up logging, run, and turn the result into the exit code. The
//! entry point itself is `sys::main` (see there for why there is no `fn main`).

#![cfg_attr(not(test), no_main)]

mod cli;
mod drain;
mod error;
mod exit;
mod explain;
#[cfg(feature = "gen-docs")]
mod gen_docs;
mod health;
mod signals;
mod spawn;
mod supervisor;
#[allow(unsafe_code)]
mod sys;
mod time;

use std::ffi::OsString;
use std::io::Write;

use cli::{LogLevel, Mode, Parsed};

/// Runs drainit with these arguments and exits; the only `process::exit`.
#[cfg_attr(test, allow(dead_code))]
fn entry(args: Vec<OsString>) -> ! {
    #[cfg(feature = "gen-docs")]
    if let Some(code) = gen_docs::run(&args) {
        std::process::exit(code)
    }
    std::process::exit(run(args))
}

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
        Mode::Explain(run) => {
            print!("{}", explain::timeline(&run));
            0
        }
        Mode::Run(run) => supervisor::run(&run, inherited),
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
