//! The command line and the environment: clap definitions (each option with
//! its `DRAINIT_*` variable, as `--help` shows them) and a pure [`parse`]
//! that checks everything up front.
//!
//! clap reads the command line only; the variables are read here, so that
//! an empty variable counts as unset, a flag wins over its variable, and
//! every refusal names the option and, when the value came from one, the
//! variable.

use std::ffi::{OsStr, OsString};
use std::fmt::Display;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use log::LevelFilter;

use crate::actions::{self, Actions};
use crate::drain::{Drain, Policy};
use crate::error::Error;
use crate::health::{Health, Url};
use crate::signals::{SigSet, Signal};
use crate::text::{Escaped, escaped};
use crate::time::{format_duration, parse_duration};

/// How much earlier than the orchestrator drainit escalates when only
/// `--stop-timeout` is given.
pub const ESCALATION_MARGIN: Duration = Duration::from_secs(1);
/// `--grace` when not given.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// `--timeout` when not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

const AFTER_HELP: &str = "\
Exit codes: the app's own code; 128+N if it was killed by signal N; 127 if COMMAND is not \
found; 126 if it cannot be executed; 125 for drainit's own errors (bad options included).

Signals: every signal drainit receives but SIGCHLD goes to the app's process group (TSTP, TTIN \
and TTOU too; drainit stops with the app only as the foreground job of a job-control shell, \
so that Ctrl-Z works). SIGTERM is followed by SIGCONT, so that a stopped \
app can act on it. With a drain option, a --drain-on signal starts the drain instead. \
--drain-on and --stop-signal take only signals that end a process by default (not CHLD, CONT, \
STOP, TSTP, TTIN, TTOU, URG, WINCH, 32 or 33); --stop-signal KILL is allowed.

Variables: a flag wins over its variable; an empty variable counts as unset. -v and -q \
together are refused. --healthcheck and --explain have no environment variable, so that a \
variable set for the whole task cannot turn the entrypoint into a health check. DRAINIT_LOG \
takes a level (off, error, warn, info, debug or trace) and wins over -v and -q. Refusals (125) \
and start-up errors (126, 127) are written at any level. A log write never waits: what stderr \
cannot take at once is dropped and counted.

Durations: 30s, 1500ms, 1m, 2.5s; a bare number means seconds; at most 8760h (a year).

As tini: run under the name docker-init (docker run --init with dockerd --init-path), tini or \
tini-static, drainit takes tini's default, signals to the app's pid only, and reads tini's leading \
-g (the process group), -s, -v, -w and -e CODE; DRAINIT_NO_GROUP=0 or TINI_KILL_PROCESS_GROUP=1 \
also give the group.";

#[derive(Parser, Debug)]
#[command(
    name = "drainit",
    version,
    about = "A PID 1 for containers: starts COMMAND in its own process group, forwards every \
             signal to it, reaps every zombie, exits with its code, and drains before it stops.",
    override_usage = "drainit [OPTIONS] [--] COMMAND [ARG]...\n       \
                      drainit --healthcheck [--drain-file PATH] [--url URL] [--timeout DURATION]\n       \
                      drainit --explain [OPTIONS] [-- COMMAND [ARG]...]",
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct Cli {
    /// Signal only the app's pid, not its process group
    #[arg(long, env = "DRAINIT_NO_GROUP", action = ArgAction::SetTrue)]
    pub no_group: bool,

    /// How long processes the app leaves behind get after SIGTERM before SIGKILL [default: 5s]
    #[arg(
        long,
        env = "DRAINIT_GRACE",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub grace: Option<OsString>,

    /// File created when a drain starts (health checks answer 503 while it exists); at start, its directory must take a new file, a stale one drainit wrote is removed, and anything else there is refused
    #[arg(
        long,
        env = "DRAINIT_DRAIN_FILE",
        value_name = "PATH",
        help_heading = "Drain"
    )]
    pub drain_file: Option<OsString>,

    /// How long the app keeps serving after the drain starts, before the stop signal [default: 0]
    #[arg(
        long,
        env = "DRAINIT_DRAIN_DELAY",
        value_name = "DURATION",
        allow_hyphen_values = true,
        help_heading = "Drain"
    )]
    pub drain_delay: Option<OsString>,

    /// Signal sent to the app when the delay ends, e.g. QUIT for nginx [default: the one that started the drain]
    #[arg(
        long,
        env = "DRAINIT_STOP_SIGNAL",
        value_name = "SIGNAL",
        allow_hyphen_values = true,
        help_heading = "Drain"
    )]
    pub stop_signal: Option<OsString>,

    /// SIGKILL everything left this long after the drain starts; drainit then exits 137
    #[arg(
        long,
        env = "DRAINIT_KILL_AFTER",
        value_name = "DURATION",
        allow_hyphen_values = true,
        help_heading = "Drain"
    )]
    pub kill_after: Option<OsString>,

    /// The orchestrator's own budget (ECS stopTimeout, docker stop -t); without --kill-after, drainit kills 1s before it
    #[arg(
        long,
        env = "DRAINIT_STOP_TIMEOUT",
        value_name = "DURATION",
        allow_hyphen_values = true,
        help_heading = "Drain"
    )]
    pub stop_timeout: Option<OsString>,

    /// Signals that start a drain [default: TERM]
    #[arg(
        long,
        env = "DRAINIT_DRAIN_ON",
        value_name = "SIGNALS",
        allow_hyphen_values = true,
        help_heading = "Drain"
    )]
    pub drain_on: Option<OsString>,

    /// Adaptive drain: send the stop signal as soon as no new connection has reached the app's listening TCP ports for this long and none carries a request (--drain-delay is then the maximum)
    #[arg(
        long,
        env = "DRAINIT_DRAIN_QUIET",
        value_name = "DURATION",
        allow_hyphen_values = true,
        help_heading = "Drain"
    )]
    pub drain_quiet: Option<OsString>,

    /// With --drain-quiet: never send the stop signal before this long after the drain starts [default: 0]
    #[arg(
        long,
        env = "DRAINIT_DRAIN_MIN",
        value_name = "DURATION",
        allow_hyphen_values = true,
        help_heading = "Drain"
    )]
    pub drain_min: Option<OsString>,

    /// With --drain-quiet: connections from these address blocks never count (the load balancer's health checks), e.g. 10.0.0.0/8,192.0.2.7
    #[arg(
        long,
        env = "DRAINIT_DRAIN_IGNORE_FROM",
        value_name = "CIDRS",
        allow_hyphen_values = true,
        help_heading = "Drain"
    )]
    pub drain_ignore_from: Option<OsString>,

    /// Keep /ready at 200, and the drain file unwritten, for this long after the drain starts; then both tell the load balancer (shorter than --drain-delay)
    #[arg(
        long,
        env = "DRAINIT_READY_FAIL_AFTER",
        value_name = "DURATION",
        allow_hyphen_values = true,
        help_heading = "Drain"
    )]
    pub ready_fail_after: Option<OsString>,

    /// Answer health probes on ADDR:PORT (:8081, 127.0.0.1:8081, [::]:8081): /ready turns 503 the instant a drain starts (or --ready-fail-after later), /live stays 200 until the app exits
    #[arg(
        long,
        env = "DRAINIT_HEALTH_LISTEN",
        value_name = "ADDR:PORT",
        allow_hyphen_values = true,
        help_heading = "Drain"
    )]
    pub health_listen: Option<OsString>,

    /// Run CMD when a drain starts, beside the delay (deregister, POST /admin/drain...): split into words like a shell, no expansion (a shell only as `sh -c '...'`)
    #[arg(
        long,
        env = "DRAINIT_ON_DRAIN",
        value_name = "CMD",
        allow_hyphen_values = true,
        help_heading = "Drain actions"
    )]
    pub on_drain: Option<OsString>,

    /// Run CMD instead of sending the stop signal when the delay ends ('nginx -s quit'); if it cannot run or fails, the stop signal goes after all. Needs --kill-after or --stop-timeout
    #[arg(
        long,
        env = "DRAINIT_STOP_COMMAND",
        value_name = "CMD",
        allow_hyphen_values = true,
        help_heading = "Drain actions"
    )]
    pub stop_command: Option<OsString>,

    /// POST to this http:// URL when a drain starts (for images without curl), for at most 10s
    #[arg(
        long,
        env = "DRAINIT_ON_DRAIN_POST",
        value_name = "URL",
        help_heading = "Drain actions"
    )]
    pub on_drain_post: Option<OsString>,

    /// Exit codes of the app that count as success: drainit exits 0 instead (e.g. 143,130 for an app killed by the drain's SIGTERM or by SIGINT)
    #[arg(
        long,
        env = "DRAINIT_SUCCESS_EXIT",
        value_name = "CODES",
        allow_hyphen_values = true
    )]
    pub success_exit: Option<OsString>,

    /// Check health and exit: 0 healthy, 1 unhealthy (draining, or --url not answering 2xx)
    #[arg(long, help_heading = "Health check")]
    pub healthcheck: bool,

    /// With --healthcheck or --health-listen: also GET this http:// URL and require a 2xx answer
    #[arg(
        long,
        env = "DRAINIT_URL",
        value_name = "URL",
        help_heading = "Health check"
    )]
    pub url: Option<OsString>,

    /// With --healthcheck or --health-listen: how long the whole check may take (drain file, lookup, connect, GET) [default: 2s]
    #[arg(
        long,
        env = "DRAINIT_TIMEOUT",
        value_name = "DURATION",
        allow_hyphen_values = true,
        help_heading = "Health check"
    )]
    pub timeout: Option<OsString>,

    /// Print the shutdown timeline these options give, and the checks made, then exit
    #[arg(long)]
    pub explain: bool,

    /// Log more: each forwarded signal, each reaped process
    #[arg(short, long, env = "DRAINIT_VERBOSE", action = ArgAction::SetTrue, conflicts_with = "quiet")]
    pub verbose: bool,

    /// Log only warnings and errors
    #[arg(short, long, env = "DRAINIT_QUIET", action = ArgAction::SetTrue)]
    pub quiet: bool,

    /// The app to run, and its arguments (passed on byte for byte)
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

/// An option that can also be set by a variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opt {
    pub flag: &'static str,
    pub var: &'static str,
}

pub const NO_GROUP: Opt = Opt::new("--no-group", "DRAINIT_NO_GROUP");
pub const GRACE: Opt = Opt::new("--grace", "DRAINIT_GRACE");
pub const DRAIN_FILE: Opt = Opt::new("--drain-file", "DRAINIT_DRAIN_FILE");
pub const DRAIN_DELAY: Opt = Opt::new("--drain-delay", "DRAINIT_DRAIN_DELAY");
pub const STOP_SIGNAL: Opt = Opt::new("--stop-signal", "DRAINIT_STOP_SIGNAL");
pub const KILL_AFTER: Opt = Opt::new("--kill-after", "DRAINIT_KILL_AFTER");
pub const STOP_TIMEOUT: Opt = Opt::new("--stop-timeout", "DRAINIT_STOP_TIMEOUT");
pub const DRAIN_ON: Opt = Opt::new("--drain-on", "DRAINIT_DRAIN_ON");
pub const HEALTH_LISTEN: Opt = Opt::new("--health-listen", "DRAINIT_HEALTH_LISTEN");
pub const ON_DRAIN: Opt = Opt::new("--on-drain", "DRAINIT_ON_DRAIN");
pub const STOP_COMMAND: Opt = Opt::new("--stop-command", "DRAINIT_STOP_COMMAND");
pub const ON_DRAIN_POST: Opt = Opt::new("--on-drain-post", "DRAINIT_ON_DRAIN_POST");
pub const SUCCESS_EXIT: Opt = Opt::new("--success-exit", "DRAINIT_SUCCESS_EXIT");
pub const URL: Opt = Opt::new("--url", "DRAINIT_URL");
pub const TIMEOUT: Opt = Opt::new("--timeout", "DRAINIT_TIMEOUT");
pub const VERBOSE: Opt = Opt::new("--verbose", "DRAINIT_VERBOSE");
pub const QUIET: Opt = Opt::new("--quiet", "DRAINIT_QUIET");
pub const DRAIN_QUIET: Opt = Opt::new("--drain-quiet", "DRAINIT_DRAIN_QUIET");
pub const DRAIN_MIN: Opt = Opt::new("--drain-min", "DRAINIT_DRAIN_MIN");
pub const DRAIN_IGNORE_FROM: Opt = Opt::new("--drain-ignore-from", "DRAINIT_DRAIN_IGNORE_FROM");
pub const READY_FAIL_AFTER: Opt = Opt::new("--ready-fail-after", "DRAINIT_READY_FAIL_AFTER");
/// The log level; a variable only.
pub const LOG_VAR: &str = "DRAINIT_LOG";

/// Every option with a variable (the clap definitions must agree: a test says so).
pub const OPTIONS: [Opt; 21] = [
    NO_GROUP,
    GRACE,
    DRAIN_FILE,
    DRAIN_DELAY,
    STOP_SIGNAL,
    KILL_AFTER,
    STOP_TIMEOUT,
    DRAIN_ON,
    DRAIN_QUIET,
    DRAIN_MIN,
    DRAIN_IGNORE_FROM,
    READY_FAIL_AFTER,
    HEALTH_LISTEN,
    ON_DRAIN,
    STOP_COMMAND,
    ON_DRAIN_POST,
    SUCCESS_EXIT,
    URL,
    TIMEOUT,
    VERBOSE,
    QUIET,
];

impl Opt {
    const fn new(flag: &'static str, var: &'static str) -> Opt {
        Opt { flag, var }
    }
}

/// The environment drainit was started with.
pub struct Env<'a>(pub &'a [(OsString, OsString)]);

impl Env<'_> {
    /// The value of `name`, as `getenv` would find it; an empty one counts as unset.
    fn get(&self, name: &str) -> Option<&OsStr> {
        self.0
            .iter()
            .find(|(n, _)| n.as_bytes() == name.as_bytes())
            .map(|(_, v)| v.as_os_str())
            .filter(|v| !v.is_empty())
    }
}

/// A value given for an option, and where it came from.
#[derive(Clone, Copy, Debug)]
struct Given<'a> {
    opt: Opt,
    text: &'a OsStr,
    from_var: bool,
}

impl<'a> Given<'a> {
    /// The flag's value if given, else its variable's, else `None`.
    fn find(opt: Opt, flag: Option<&'a OsString>, env: &'a Env) -> Option<Given<'a>> {
        match flag {
            Some(text) => Some(Given {
                opt,
                text,
                from_var: false,
            }),
            None => env.get(opt.var).map(|text| Given {
                opt,
                text,
                from_var: true,
            }),
        }
    }

    /// ` (from DRAINIT_X)` when the value came from the variable.
    fn origin(&self) -> String {
        if self.from_var {
            format!(" (from {})", self.opt.var)
        } else {
            String::new()
        }
    }

    /// `--grace: PROBLEM (from DRAINIT_GRACE)`.
    fn refuse(&self, problem: impl Display) -> Error {
        Error::Usage(format!("{}: {problem}{}", self.opt.flag, self.origin()))
    }

    /// `--drain-delay (10s, from DRAINIT_DRAIN_DELAY)`, for combinations.
    fn named(&self, value: impl Display) -> String {
        if self.from_var {
            format!("{} ({value}, from {})", self.opt.flag, self.opt.var)
        } else {
            format!("{} ({value})", self.opt.flag)
        }
    }

    fn shown(&self) -> Escaped<'a> {
        Escaped(self.text.as_bytes())
    }

    fn parse<T>(&self, parser: impl Fn(&str) -> Result<T, String>) -> Result<T, Error> {
        let text = self
            .text
            .to_str()
            .ok_or_else(|| self.refuse(format!("'{}' is not valid UTF-8", self.shown())))?;
        parser(text).map_err(|e| self.refuse(e))
    }
}

/// A value from an option, with where it came from.
type Valued<'a, T> = Option<(T, Given<'a>)>;

fn value<'a, T>(
    opt: Opt,
    flag: Option<&'a OsString>,
    env: &'a Env,
    parser: impl Fn(&str) -> Result<T, String>,
) -> Result<Valued<'a, T>, Error> {
    Given::find(opt, flag, env)
        .map(|g| g.parse(parser).map(|v| (v, g)))
        .transpose()
}

/// A switch: on if its flag is given, else as its variable says (off if unset).
fn switch(opt: Opt, flag: bool, env: &Env) -> Result<bool, Error> {
    if flag {
        return Ok(true);
    }
    Ok(value(opt, None, env, boolean)?.is_some_and(|(on, _)| on))
}

/// `1/0`, `true/false`, `yes/no`, `on/off` (and `y/n`, `t/f`), in any case.
fn boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Ok(true),
        "0" | "false" | "f" | "no" | "n" | "off" => Ok(false),
        _ => Err(format!(
            "invalid value '{}' (use 1/0, true/false, yes/no or on/off)",
            escaped(text)
        )),
    }
}

/// A `--stop-signal`: a signal that ends a process (see `Signal::ends_a_process`).
fn stop_signal(text: &str) -> Result<Signal, String> {
    let signal = Signal::parse(text)?;
    signal
        .ends_a_process()
        .map_err(|why| format!("{signal} cannot stop the app: {why}"))?;
    Ok(signal)
}

/// A `--drain-on` list: signals that end a process and reach drainit.
fn drain_on(text: &str) -> Result<SigSet, String> {
    let set = SigSet::parse(text)?;
    for signal in set.iter() {
        signal
            .can_start_a_drain()
            .map_err(|why| format!("{signal} cannot start a drain: {why}"))?;
    }
    Ok(set)
}

/// `DRAINIT_LOG`: one level.
fn log_level(text: &str) -> Result<LevelFilter, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "off" => Ok(LevelFilter::Off),
        "error" => Ok(LevelFilter::Error),
        "warn" | "warning" => Ok(LevelFilter::Warn),
        "info" => Ok(LevelFilter::Info),
        "debug" => Ok(LevelFilter::Debug),
        "trace" => Ok(LevelFilter::Trace),
        _ => Err(format!(
            "unknown level '{}' (use off, error, warn, info, debug or trace)",
            escaped(text)
        )),
    }
}

/// Where the kill deadline came from, for `--explain` and the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillSource {
    KillAfter,
    StopTimeout,
}

/// What running an app (or explaining how it would be stopped) needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub command: Vec<OsString>,
    pub group: bool,
    pub drain_file: Option<PathBuf>,
    /// The drain file came from `DRAINIT_DRAIN_FILE` (for the start-up check's line).
    pub drain_file_from_var: bool,
    pub stop_timeout: Option<Duration>,
    pub kill_source: Option<KillSource>,
    pub policy: Policy,
    /// `--health-listen`.
    pub listen: Option<Box<Listen>>,
    /// `--on-drain`, `--stop-command`, `--on-drain-post`.
    pub actions: Box<Actions>,
}

/// The health listener's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    pub address: SocketAddr,
    /// With `--url`: the app's own health check, which `/ready` asks too.
    pub app_health: Option<Health>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Run(Launch),
    Explain(Launch),
    Healthcheck(Health),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    pub log: LevelFilter,
    /// `--success-exit`: the app's exit codes that become 0.
    pub success_exit: Option<SuccessExit>,
}

/// The app's exit codes that `--success-exit` turns into 0, and where they
/// were set (the option or its variable), for the log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuccessExit {
    codes: Vec<u8>,
    pub from: &'static str,
}

impl SuccessExit {
    /// `143,130`: exit codes 0-255, comma-separated. drainit's own codes
    /// (125, 126, 127) and 137 (a SIGKILL: drainit's kill deadline, or the
    /// OOM killer) are refused: counting them as success would hide a failure.
    pub fn parse(text: &str) -> Result<SuccessExit, String> {
        let mut codes = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err("expected exit codes separated by commas, e.g. 143,130".into());
            }
            let code = item
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| item.parse::<u8>().ok())
                .flatten()
                .ok_or_else(|| format!("'{}' is not an exit code (0-255)", escaped(&cut(item))))?;
            match code {
                125..=127 => {
                    return Err(format!(
                        "{code} is drainit's own exit code (125: its error, 126: cannot execute, 127: not found) and cannot count as success"
                    ));
                }
                137 => {
                    return Err(
                        "137 is a SIGKILL (drainit's kill deadline, or the OOM killer) and cannot count as success"
                            .into(),
                    );
                }
                _ => {}
            }
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        Ok(SuccessExit {
            codes,
            from: SUCCESS_EXIT.flag,
        })
    }

    pub fn contains(&self, code: i32) -> bool {
        self.codes.iter().any(|&c| i32::from(c) == code)
    }
}

/// At most 24 characters of `text`, for an error line (a templated variable
/// can be 128 KiB long).
fn cut(text: &str) -> String {
    match text.char_indices().nth(24) {
        Some((end, _)) => format!("{}...", text.get(..end).unwrap_or_default()),
        None => text.to_string(),
    }
}

/// The outcome of reading the command line.
// Made once at start and moved once: its size costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    Config(Config),
    /// `--help` or `--version`: print this on stdout and exit 0.
    Print(String),
}

/// The `DRAINIT_*` variables among `names` that drainit does not know: most
/// likely a typo in a task definition, which would silently turn an option
/// off. Escaped, ready to be logged.
pub fn unknown_variables<I: IntoIterator<Item = OsString>>(names: I) -> Vec<String> {
    let mut unknown: Vec<String> = names
        .into_iter()
        .filter(|n| n.as_bytes().starts_with(b"DRAINIT_"))
        .filter(|n| {
            n.as_bytes() != LOG_VAR.as_bytes()
                && !OPTIONS.iter().any(|o| o.var.as_bytes() == n.as_bytes())
        })
        .map(|n| Escaped(n.as_bytes()).to_string())
        .collect();
    unknown.sort();
    unknown.dedup();
    unknown
}

/// Parses `args` (program name first) and `env`, and checks them.
pub fn parse(args: Vec<OsString>, env: &Env) -> Result<Parsed, Error> {
    // clap sees the command line only: the variables are read below.
    let command = Cli::command().mut_args(|a| a.env(None));
    let matches = match command.try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp => Ok(Parsed::Print(help())),
                ErrorKind::DisplayVersion => Ok(Parsed::Print(e.render().to_string())),
                _ => Err(Error::Usage(suggest_option(&e, one_line(&e)))),
            };
        }
    };
    let cli = Cli::from_arg_matches(&matches).map_err(|e| Error::Usage(one_line(&e)))?;
    Config::check(&cli, env).map(Parsed::Config)
}

/// `--help`, with each option's variable (its value hidden: it may be anything).
fn help() -> String {
    Cli::command()
        .mut_args(|a| a.hide_env_values(true))
        .render_help()
        .to_string()
}

/// `unexpected argument '--drain-dely' found; did you mean --drain-delay?`
/// (clap's own suggestions are not built in).
fn suggest_option(e: &clap::Error, line: String) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return line;
    };
    let name = arg.split('=').next().unwrap_or(arg);
    if e.kind() != ErrorKind::UnknownArgument || !name.starts_with("--") {
        return line;
    }
    let command = Cli::command();
    let longs: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long())
        .chain(["help", "version"])
        .map(|l| format!("--{l}"))
        .collect();
    match crate::preflight::nearest(name, longs.iter().map(String::as_str)) {
        Some(known) => format!("{line}; did you mean {known}?"),
        None => line,
    }
}

/// clap's message on one line: what comes before its tips and usage, with
/// whatever the user typed escaped (a newline in it cannot split the line).
fn one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let message = rendered.strip_prefix("error: ").unwrap_or(&rendered);
    let end = ["\n\n", "\nUsage:", "\n  tip:"]
        .iter()
        .filter_map(|cut| message.find(cut))
        .min()
        .unwrap_or(message.len());
    let message = message.get(..end).unwrap_or(message).trim();
    escaped(message).to_string()
}

impl Config {
    fn check(cli: &Cli, env: &Env) -> Result<Config, Error> {
        let usage = |text: String| Err(Error::Usage(text));
        let log = Config::log(cli, env)?;
        let success_exit = value(
            SUCCESS_EXIT,
            cli.success_exit.as_ref(),
            env,
            SuccessExit::parse,
        )?
        .map(|(codes, given)| SuccessExit {
            from: if given.from_var {
                SUCCESS_EXIT.var
            } else {
                SUCCESS_EXIT.flag
            },
            ..codes
        });
        if cli.healthcheck && cli.explain {
            return usage("--healthcheck and --explain cannot be used together".into());
        }
        let values = Values::read(cli, env)?;
        // --timeout and --url serve the health check, and the listener's /ready.
        let timeout = match values.timeout {
            Some((t, given)) if t.is_zero() => {
                return Err(given.refuse("must be longer than 0s"));
            }
            Some((t, _)) => t,
            None => DEFAULT_TIMEOUT,
        };
        if cli.healthcheck {
            if let Some(first) = cli.command.first() {
                return usage(format!(
                    "--healthcheck takes no COMMAND, got '{}'",
                    Escaped(first.as_bytes())
                ));
            }
            // Url::parse escapes what it quotes of the URL itself.
            let url = value(URL, cli.url.as_ref(), env, Url::parse)?.map(|(url, _)| url);
            return Ok(Config {
                mode: Mode::Healthcheck(Health {
                    drain_file: values.drain_file,
                    url,
                    timeout,
                }),
                log,
                success_exit: None,
            });
        }
        let listen = match values.health_listen {
            Some((address, _)) => {
                let url = value(URL, cli.url.as_ref(), env, Url::parse)?.map(|(url, _)| url);
                Some(Box::new(Listen {
                    address,
                    app_health: url.map(|url| Health {
                        drain_file: None,
                        url: Some(url),
                        timeout,
                    }),
                }))
            }
            None => {
                for (opt, given) in [(URL, cli.url.is_some()), (TIMEOUT, cli.timeout.is_some())] {
                    if given {
                        return usage(format!(
                            "{} only applies with --healthcheck or --health-listen",
                            opt.flag
                        ));
                    }
                }
                None
            }
        };
        let mut launch = Launch::check(cli, values)?;
        launch.listen = listen;
        if cli.explain {
            return Ok(Config {
                mode: Mode::Explain(launch),
                log,
                success_exit,
            });
        }
        if launch.command.is_empty() {
            return usage(
                "missing COMMAND to run (usage: drainit [OPTIONS] [--] COMMAND [ARG]...)".into(),
            );
        }
        Ok(Config {
            mode: Mode::Run(launch),
            log,
            success_exit,
        })
    }

    /// `-v`/`-q` (together: refused), else `DRAINIT_VERBOSE`/`DRAINIT_QUIET`;
    /// `DRAINIT_LOG`, when set, wins over all four.
    fn log(cli: &Cli, env: &Env) -> Result<LevelFilter, Error> {
        // clap refuses -v with -q; a flag wins over both variables.
        let (verbose, quiet) = if cli.verbose || cli.quiet {
            (cli.verbose, cli.quiet)
        } else {
            let verbose = switch(VERBOSE, false, env)?;
            let quiet = switch(QUIET, false, env)?;
            if verbose && quiet {
                return Err(Error::Usage(format!(
                    "{} and {} cannot be used together (from {} and {})",
                    VERBOSE.flag, QUIET.flag, VERBOSE.var, QUIET.var
                )));
            }
            (verbose, quiet)
        };
        let level = match (verbose, quiet) {
            (true, _) => LevelFilter::Debug,
            (_, true) => LevelFilter::Warn,
            _ => LevelFilter::Info,
        };
        match env.get(LOG_VAR) {
            None => Ok(level),
            Some(text) => text
                .to_str()
                .ok_or_else(|| format!("'{}' is not valid UTF-8", Escaped(text.as_bytes())))
                .and_then(log_level)
                .map_err(|e| Error::Usage(format!("{LOG_VAR}: {e}"))),
        }
    }
}

/// Every value, each checked on its own, with where it came from.
struct Values<'a> {
    group: bool,
    grace: Valued<'a, Duration>,
    drain_file: Option<PathBuf>,
    drain_file_given: bool,
    drain_file_from_var: bool,
    drain_delay: Valued<'a, Duration>,
    stop_signal: Valued<'a, Signal>,
    kill_after: Valued<'a, Duration>,
    stop_timeout: Valued<'a, Duration>,
    drain_on: Valued<'a, SigSet>,
    health_listen: Valued<'a, SocketAddr>,
    timeout: Valued<'a, Duration>,
    actions: Box<Actions>,
    drain_quiet: Valued<'a, Duration>,
    drain_min: Valued<'a, Duration>,
    drain_ignore_from: Valued<'a, Vec<crate::traffic::Cidr>>,
    ready_fail_after: Valued<'a, Duration>,
}

impl<'a> Values<'a> {
    fn read(cli: &'a Cli, env: &'a Env) -> Result<Values<'a>, Error> {
        let duration =
            |opt: Opt, flag: &'a Option<OsString>| value(opt, flag.as_ref(), env, parse_duration);
        let drain_file = Given::find(DRAIN_FILE, cli.drain_file.as_ref(), env);
        if let Some(given) = drain_file
            && given.text.is_empty()
        {
            return Err(given.refuse("the path is empty"));
        }
        Ok(Values {
            group: !switch(NO_GROUP, cli.no_group, env)?,
            grace: duration(GRACE, &cli.grace)?,
            drain_file: drain_file.map(|g| PathBuf::from(g.text)),
            drain_file_given: drain_file.is_some(),
            drain_file_from_var: drain_file.is_some_and(|g| g.from_var),
            drain_delay: duration(DRAIN_DELAY, &cli.drain_delay)?,
            stop_signal: value(STOP_SIGNAL, cli.stop_signal.as_ref(), env, stop_signal)?,
            kill_after: duration(KILL_AFTER, &cli.kill_after)?,
            stop_timeout: duration(STOP_TIMEOUT, &cli.stop_timeout)?,
            drain_on: value(DRAIN_ON, cli.drain_on.as_ref(), env, drain_on)?,
            health_listen: value(
                HEALTH_LISTEN,
                cli.health_listen.as_ref(),
                env,
                crate::listener::parse_address,
            )?,
            timeout: duration(TIMEOUT, &cli.timeout)?,
            actions: Box::new(drain_actions(cli, env)?),
            drain_quiet: duration(DRAIN_QUIET, &cli.drain_quiet)?,
            drain_min: duration(DRAIN_MIN, &cli.drain_min)?,
            drain_ignore_from: value(
                DRAIN_IGNORE_FROM,
                cli.drain_ignore_from.as_ref(),
                env,
                crate::traffic::Cidr::parse_list,
            )?,
            ready_fail_after: duration(READY_FAIL_AFTER, &cli.ready_fail_after)?,
        })
    }
}

/// `--on-drain`, `--stop-command` and `--on-drain-post`, each checked on its own.
fn drain_actions(cli: &Cli, env: &Env) -> Result<Actions, Error> {
    let command = |opt: Opt, flag: Option<&OsString>| {
        Given::find(opt, flag, env)
            .map(|g| {
                let from = actions::From {
                    flag: opt.flag,
                    var: g.from_var.then_some(opt.var),
                };
                actions::Command::parse(g.text, from)
            })
            .transpose()
    };
    Ok(Actions {
        on_drain: command(ON_DRAIN, cli.on_drain.as_ref())?,
        stop_command: command(STOP_COMMAND, cli.stop_command.as_ref())?,
        post: value(ON_DRAIN_POST, cli.on_drain_post.as_ref(), env, Url::parse)?
            .map(|(url, _)| url),
    })
}

impl Launch {
    fn check(cli: &Cli, v: Values) -> Result<Launch, Error> {
        let usage = |text: String| Err(Error::Usage(text));
        let show = format_duration;
        let draining = v.drain_file_given
            || v.drain_delay.is_some()
            || v.stop_signal.is_some()
            || v.kill_after.is_some()
            || v.stop_timeout.is_some()
            || v.drain_on.is_some()
            || v.actions.any()
            || v.drain_quiet.is_some()
            || v.ready_fail_after.is_some();
        let on = v.drain_on.map_or(SigSet::of(&[Signal::TERM]), |(on, _)| on);
        let delay = v.drain_delay.map_or(Duration::ZERO, |(d, _)| d);
        let delay_named = || {
            v.drain_delay.map_or_else(
                || format!("{} (0s, the default)", DRAIN_DELAY.flag),
                |(d, g)| g.named(show(d)),
            )
        };

        if let Some((kill, given)) = v.kill_after
            && kill.is_zero()
        {
            return Err(given.refuse("must be longer than 0s"));
        }
        if let (Some((kill, kill_g)), Some((stop, stop_g))) = (v.kill_after, v.stop_timeout)
            && kill >= stop
        {
            return usage(format!(
                "{} must be shorter than {}, or the orchestrator kills first",
                kill_g.named(show(kill)),
                stop_g.named(show(stop))
            ));
        }
        let (kill_after, kill_source) = match (v.kill_after, v.stop_timeout) {
            (Some((kill, _)), _) => (Some(kill), Some(KillSource::KillAfter)),
            (None, Some((stop, stop_g))) => match stop.checked_sub(ESCALATION_MARGIN) {
                Some(kill) if !kill.is_zero() => (Some(kill), Some(KillSource::StopTimeout)),
                _ => {
                    return usage(format!(
                        "{} must be longer than {}: drainit escalates {} before it",
                        stop_g.named(show(stop)),
                        show(ESCALATION_MARGIN),
                        show(ESCALATION_MARGIN)
                    ));
                }
            },
            (None, None) => (None, None),
        };
        if let Some((stop, stop_g)) = v.stop_timeout
            && delay >= stop
        {
            return usage(format!(
                "{} must be shorter than {}",
                delay_named(),
                stop_g.named(show(stop))
            ));
        }
        if let Some(kill) = kill_after
            && delay >= kill
        {
            let deadline = match (v.kill_after, v.stop_timeout) {
                (Some((_, kill_g)), _) => kill_g.named(show(kill)),
                (None, Some((_, stop_g))) => format!(
                    "the kill deadline ({}: {} minus {})",
                    show(kill),
                    stop_g.opt.flag,
                    show(ESCALATION_MARGIN)
                ),
                (None, None) => show(kill),
            };
            return usage(format!("{} must be shorter than {deadline}", delay_named()));
        }

        if let (Some(stop), None) = (&v.actions.stop_command, kill_after) {
            return Err(stop.from.refuse(
                "needs a kill deadline (--kill-after or --stop-timeout): a stop command that hangs must not leave the app running",
            ));
        }

        let (adaptive, ready_fail_after) = adaptive(&v, delay, &delay_named)?;
        let drain = draining.then_some(Drain {
            on,
            delay,
            stop_signal: v.stop_signal.map(|(s, _)| s),
            kill_after,
            adaptive,
            ready_fail_after,
        });
        Ok(Launch {
            command: cli.command.clone(),
            group: v.group,
            drain_file: v.drain_file,
            drain_file_from_var: v.drain_file_from_var,
            stop_timeout: v.stop_timeout.map(|(s, _)| s),
            kill_source,
            policy: Policy {
                drain,
                grace: v.grace.map_or(DEFAULT_GRACE, |(g, _)| g),
            },
            listen: None,
            actions: v.actions,
        })
    }
}

/// `--drain-quiet`, `--drain-min`, `--drain-ignore-from` and `--ready-fail-after`, checked
/// against the drain delay (the maximum).
fn adaptive(
    v: &Values,
    delay: Duration,
    delay_named: &dyn Fn() -> String,
) -> Result<(Option<Box<crate::drain::Adaptive>>, Duration), Error> {
    let show = format_duration;
    let zero = |value: Valued<Duration>| match value {
        Some((d, given)) if d.is_zero() => Err(given.refuse("must be longer than 0s")),
        _ => Ok(()),
    };
    zero(v.drain_quiet)?;
    zero(v.ready_fail_after)?;
    let ready_fail_after = match v.ready_fail_after {
        Some((rfa, given)) => {
            if v.health_listen.is_none() && !v.drain_file_given {
                return Err(given.refuse(
                    "only applies with --health-listen or --drain-file (it delays their answer)",
                ));
            }
            if rfa >= delay {
                return Err(Error::Usage(format!(
                    "{} must be shorter than {}",
                    given.named(show(rfa)),
                    delay_named()
                )));
            }
            rfa
        }
        None => Duration::ZERO,
    };
    let Some((quiet, quiet_g)) = v.drain_quiet else {
        if let Some(given) = v
            .drain_min
            .map(|(_, g)| g)
            .or(v.drain_ignore_from.as_ref().map(|(_, g)| *g))
        {
            return Err(given.refuse("only applies with --drain-quiet"));
        }
        return Ok((None, ready_fail_after));
    };
    if quiet >= delay {
        return Err(Error::Usage(format!(
            "{} must be shorter than {}, the longest the drain may take",
            quiet_g.named(show(quiet)),
            delay_named()
        )));
    }
    let min = v.drain_min.map_or(Duration::ZERO, |(m, _)| m);
    if let Some((min, min_g)) = v.drain_min
        && min > delay
    {
        return Err(Error::Usage(format!(
            "{} must not be longer than {}, the longest the drain may take",
            min_g.named(show(min)),
            delay_named()
        )));
    }
    let ignore_from = v
        .drain_ignore_from
        .as_ref()
        .map(|(c, _)| c.clone())
        .unwrap_or_default();
    Ok((
        Some(Box::new(crate::drain::Adaptive {
            min,
            quiet,
            ignore_from,
        })),
        ready_fail_after,
    ))
}

/// The command as one readable string, for log lines (control bytes escaped).
pub fn show_command(command: &[OsString]) -> String {
    command
        .iter()
        .map(|a| Escaped(a.as_bytes()).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Config, String> {
        parse_env(args, &[])
    }

    fn parse_env(args: &[&str], vars: &[(&str, &str)]) -> Result<Config, String> {
        let args = std::iter::once("drainit")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        let vars: Vec<(OsString, OsString)> = vars
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect();
        match parse(args, &Env(&vars)) {
            Ok(Parsed::Config(c)) => Ok(c),
            Ok(Parsed::Print(_)) => Err("printed".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn launch(args: &[&str]) -> Launch {
        match parse_strs(args).unwrap().mode {
            Mode::Run(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn options_end_at_the_first_command_word() {
        let r = launch(&["sh", "-c", "exit 3", "--no-group"]);
        assert_eq!(r.command, ["sh", "-c", "exit 3", "--no-group"]);
        assert!(r.group);
        let r = launch(&["--no-group", "--", "-weird-name", "-v"]);
        assert_eq!(r.command, ["-weird-name", "-v"]);
        assert!(!r.group);
    }

    #[test]
    fn no_drain_option_means_plain_forwarding() {
        let r = launch(&["app"]);
        assert_eq!(r.policy.drain, None);
        assert_eq!(r.policy.grace, Duration::from_secs(5));
    }

    #[test]
    fn stop_timeout_alone_escalates_a_second_before() {
        let r = launch(&["--stop-timeout", "30s", "--drain-delay", "5s", "app"]);
        let d = r.policy.drain.unwrap();
        assert_eq!(d.kill_after, Some(Duration::from_secs(29)));
        assert_eq!(d.delay, Duration::from_secs(5));
        assert_eq!(d.on, SigSet::of(&[Signal::TERM]));
        assert_eq!(r.kill_source, Some(KillSource::StopTimeout));
    }

    #[test]
    fn every_validation_error_names_its_options() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["--drain-delay", "30s", "--kill-after", "30s", "app"],
                &["--drain-delay", "--kill-after"],
            ),
            (
                &["--drain-delay", "30s", "--stop-timeout", "30s", "app"],
                &["--drain-delay", "--stop-timeout"],
            ),
            (
                &["--drain-delay", "29.5s", "--stop-timeout", "30s", "app"],
                &["--drain-delay", "kill deadline"],
            ),
            (
                &["--kill-after", "30s", "--stop-timeout", "30s", "app"],
                &["--kill-after", "--stop-timeout"],
            ),
            (&["--stop-timeout", "1s", "app"], &["--stop-timeout"]),
            (
                &["--stop-signal", "SIGFOO", "app"],
                &["--stop-signal", "SIGFOO"],
            ),
            (
                &["--drain-on", "TERM,BOGUS", "app"],
                &["--drain-on", "BOGUS"],
            ),
            (&["--drain-on", "KILL", "app"], &["--drain-on", "SIGKILL"]),
            (&["--drain-delay", "5x", "app"], &["--drain-delay", "5x"]),
            (&["--kill-after", "-1", "app"], &["--kill-after"]),
            (&["--grace", "soon", "app"], &["--grace", "soon"]),
            (&["--url", "http://x/", "app"], &["--url", "--healthcheck"]),
            (
                &["--healthcheck", "--url", "https://x/"],
                &["--url", "https"],
            ),
            (&["--healthcheck", "app"], &["--healthcheck", "app"]),
            (
                &["--healthcheck", "--explain"],
                &["--healthcheck", "--explain"],
            ),
            (&["--bogus", "app"], &["--bogus"]),
            (&["-v", "-q", "app"], &["--verbose", "--quiet"]),
            (&[], &["COMMAND"]),
            (&["--on-drain", "", "app"], &["--on-drain", "empty"]),
            (
                &["--on-drain", "sh -c 'x", "app"],
                &["--on-drain", "unbalanced"],
            ),
            (
                &["--stop-command", "nginx -s quit", "app"],
                &["--stop-command", "--kill-after", "--stop-timeout"],
            ),
            (
                &["--stop-command", "\"", "--kill-after", "3s", "app"],
                &["--stop-command", "unbalanced"],
            ),
            (
                &["--on-drain-post", "https://x/", "app"],
                &["--on-drain-post", "https"],
            ),
        ];
        for (args, names) in cases {
            let err = parse_strs(args).expect_err(&format!("{args:?} should fail"));
            assert!(!err.contains('\n'), "{args:?}: one line: {err}");
            for name in *names {
                assert!(err.contains(name), "{args:?}: '{err}' should name {name}");
            }
        }
    }

    #[test]
    fn spots_unknown_variables() {
        let names = [
            "DRAINIT_DRAIN_DELAY",
            "DRAINIT_DRAIN_DELAYS",
            "DRAINIT_LOG",
            "PATH",
            "DRAINIT_STOPTIMEOUT",
        ];
        assert_eq!(
            unknown_variables(names.map(OsString::from)),
            ["DRAINIT_DRAIN_DELAYS", "DRAINIT_STOPTIMEOUT"]
        );
    }

    #[test]
    fn drain_actions_are_split_once_and_start_a_drain() {
        let r = launch(&[
            "--on-drain",
            "sh -c 'echo \"draining $X\"'",
            "--stop-command",
            "nginx -s quit",
            "--stop-timeout",
            "30s",
            "--on-drain-post",
            "http://127.0.0.1:8500/v1/agent/service/deregister/web",
            "app",
        ]);
        let on_drain = r.actions.on_drain.unwrap();
        assert_eq!(on_drain.argv, ["sh", "-c", "echo \"draining $X\""]);
        assert_eq!(on_drain.from.flag, "--on-drain");
        assert_eq!(
            r.actions.stop_command.unwrap().argv,
            ["nginx", "-s", "quit"]
        );
        assert_eq!(r.actions.post.unwrap().port, 8500);
        // An action alone is a drain option: SIGTERM starts a drain.
        for args in [
            &["--on-drain", "true", "app"][..],
            &["--on-drain-post", "http://x/", "app"],
            &["--stop-command", "true", "--kill-after", "2s", "app"],
        ] {
            let r = launch(args);
            assert_eq!(
                r.policy.drain.unwrap().on,
                SigSet::of(&[Signal::TERM]),
                "{args:?}"
            );
        }
        let c = parse_env(&["app"], &[("DRAINIT_ON_DRAIN", "a b")]).unwrap();
        let Mode::Run(r) = c.mode else { panic!() };
        let on_drain = r.actions.on_drain.unwrap();
        assert_eq!(on_drain.argv, ["a", "b"]);
        assert_eq!(on_drain.from.var, Some("DRAINIT_ON_DRAIN"));
    }

    #[test]
    fn explain_needs_no_command() {
        assert!(matches!(
            parse_strs(&["--explain"]).unwrap().mode,
            Mode::Explain(_)
        ));
        assert!(matches!(
            parse_strs(&["--explain", "--", "app"]).unwrap().mode,
            Mode::Explain(_)
        ));
    }

    #[test]
    fn healthcheck_parses_its_options() {
        let c = parse_strs(&[
            "--healthcheck",
            "--drain-file",
            "/tmp/d",
            "--url",
            "http://127.0.0.1:8080/healthz",
            "--timeout",
            "500ms",
        ])
        .unwrap();
        let Mode::Healthcheck(h) = c.mode else {
            panic!()
        };
        assert_eq!(h.drain_file, Some(PathBuf::from("/tmp/d")));
        assert_eq!(h.timeout, Duration::from_millis(500));
        assert!(h.url.is_some());
    }

    #[test]
    fn adaptive_drain_options() {
        let r = launch(&[
            "--drain-delay",
            "30s",
            "--drain-quiet",
            "1s",
            "--drain-min",
            "2s",
            "--drain-ignore-from",
            "10.0.0.0/8,::1",
            "app",
        ]);
        let d = r.policy.drain.unwrap();
        let a = d.adaptive.unwrap();
        assert_eq!(
            (a.min, a.quiet),
            (Duration::from_secs(2), Duration::from_secs(1))
        );
        assert_eq!(a.ignore_from.len(), 2);
        assert_eq!(d.ready_fail_after, Duration::ZERO);
        // By variables too, and min may equal the maximum.
        let c = parse_env(
            &["app"],
            &[
                ("DRAINIT_DRAIN_DELAY", "5s"),
                ("DRAINIT_DRAIN_QUIET", "500ms"),
                ("DRAINIT_DRAIN_MIN", "5s"),
                ("DRAINIT_HEALTH_LISTEN", ":8081"),
                ("DRAINIT_READY_FAIL_AFTER", "2s"),
            ],
        )
        .unwrap();
        let Mode::Run(r) = c.mode else { panic!() };
        let d = r.policy.drain.unwrap();
        assert_eq!(d.adaptive.unwrap().quiet, Duration::from_millis(500));
        assert_eq!(d.ready_fail_after, Duration::from_secs(2));
        // Without --drain-quiet nothing changes.
        assert_eq!(
            launch(&["--drain-delay", "5s", "app"])
                .policy
                .drain
                .unwrap()
                .adaptive,
            None
        );
    }

    #[test]
    fn adaptive_drain_refusals_name_the_option() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                &["--drain-delay", "5s", "--drain-quiet", "0", "app"],
                &[],
                "--drain-quiet: must be longer than 0s",
            ),
            (
                &["--drain-quiet", "1s", "app"],
                &[],
                "--drain-quiet (1s) must be shorter than --drain-delay (0s, the default)",
            ),
            (
                &["--drain-delay", "5s", "--drain-quiet", "5s", "app"],
                &[],
                "--drain-quiet (5s) must be shorter than --drain-delay (5s)",
            ),
            (
                &[
                    "--drain-delay",
                    "5s",
                    "--drain-quiet",
                    "1s",
                    "--drain-min",
                    "6s",
                    "app",
                ],
                &[],
                "--drain-min (6s) must not be longer than --drain-delay (5s)",
            ),
            (
                &["--drain-delay", "5s", "--drain-min", "1s", "app"],
                &[],
                "--drain-min: only applies with --drain-quiet",
            ),
            (
                &["--drain-delay", "5s", "app"],
                &[("DRAINIT_DRAIN_IGNORE_FROM", "10.0.0.0/8")],
                "--drain-ignore-from: only applies with --drain-quiet (from DRAINIT_DRAIN_IGNORE_FROM)",
            ),
            (
                &[
                    "--drain-delay",
                    "5s",
                    "--drain-quiet",
                    "1s",
                    "--drain-ignore-from",
                    "10.0.0.0/40",
                    "app",
                ],
                &[],
                "--drain-ignore-from: '10.0.0.0/40' is not an address block",
            ),
            (
                &["--drain-delay", "5s", "app"],
                &[("DRAINIT_DRAIN_QUIET", "soon")],
                "--drain-quiet: ",
            ),
            (
                &["--drain-delay", "5s", "--ready-fail-after", "1s", "app"],
                &[],
                "--ready-fail-after: only applies with --health-listen or --drain-file",
            ),
            (
                &[
                    "--drain-delay",
                    "5s",
                    "--drain-file",
                    "/tmp/x",
                    "--ready-fail-after",
                    "5s",
                    "app",
                ],
                &[],
                "--ready-fail-after (5s) must be shorter than --drain-delay (5s)",
            ),
            (
                &["--drain-delay", "5s", "--drain-file", "/tmp/x", "app"],
                &[("DRAINIT_READY_FAIL_AFTER", "0s")],
                "--ready-fail-after: must be longer than 0s (from DRAINIT_READY_FAIL_AFTER)",
            ),
        ];
        for (args, vars, want) in cases {
            let got = parse_env(args, vars).unwrap_err();
            assert!(got.contains(want), "{args:?} {vars:?}: {got}");
            assert!(!got.contains('\n'), "{got}");
        }
    }

    #[test]
    fn the_variable_table_agrees_with_the_clap_definitions() {
        let command = Cli::command();
        let with_env: Vec<(String, String)> = command
            .get_arguments()
            .filter_map(|a| {
                Some((
                    format!("--{}", a.get_long()?),
                    a.get_env()?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        let table: Vec<(String, String)> = OPTIONS
            .iter()
            .map(|o| (o.flag.to_string(), o.var.to_string()))
            .collect();
        assert_eq!(with_env, table);
        assert!(AFTER_HELP.contains(crate::time::MAX_DURATION_TEXT));
        assert!(AFTER_HELP.contains(LOG_VAR));
    }

    #[test]
    fn a_refusal_names_the_variable_only_when_the_value_came_from_it() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                &["app"],
                &[("DRAINIT_DRAIN_ON", "KILL")],
                "--drain-on: SIGKILL cannot start a drain: it cannot be caught, so it never reaches drainit (from DRAINIT_DRAIN_ON)",
            ),
            (
                &["--kill-after", "5s", "app"],
                &[("DRAINIT_DRAIN_DELAY", "10s")],
                "--drain-delay (10s, from DRAINIT_DRAIN_DELAY) must be shorter than --kill-after (5s)",
            ),
            (
                &["--kill-after", "0", "app"],
                &[],
                "--kill-after: must be longer than 0s",
            ),
            (
                &["-v", "-q", "app"],
                &[],
                "the argument '--verbose' cannot be used with '--quiet'",
            ),
            (
                &["app"],
                &[("DRAINIT_VERBOSE", "1"), ("DRAINIT_QUIET", "yes")],
                "--verbose and --quiet cannot be used together (from DRAINIT_VERBOSE and DRAINIT_QUIET)",
            ),
            (
                &["--grace", "-1", "app"],
                &[],
                "--grace: invalid duration '-1': negative",
            ),
            (
                &["app"],
                &[("DRAINIT_GRACE", "18446744073709551615")],
                "--grace: invalid duration '18446744073709551615': longer than a year (at most 8760h) (from DRAINIT_GRACE)",
            ),
            (
                &["--stop-signal", "-1", "app"],
                &[],
                "--stop-signal: invalid signal '-1': negative",
            ),
            (
                &["app"],
                &[("DRAINIT_STOP_SIGNAL", "CONT")],
                "--stop-signal: SIGCONT cannot stop the app: it resumes a stopped process instead of ending it (from DRAINIT_STOP_SIGNAL)",
            ),
            (
                &["app"],
                &[("DRAINIT_NO_GROUP", "maybe")],
                "--no-group: invalid value 'maybe' (use 1/0, true/false, yes/no or on/off) (from DRAINIT_NO_GROUP)",
            ),
            (
                &["app"],
                &[("DRAINIT_LOG", "loud")],
                "DRAINIT_LOG: unknown level 'loud' (use off, error, warn, info, debug or trace)",
            ),
            (
                &["app"],
                &[("DRAINIT_STOP_TIMEOUT", "1s")],
                "--stop-timeout (1s, from DRAINIT_STOP_TIMEOUT) must be longer than 1s: drainit escalates 1s before it",
            ),
            (
                &["--drain-file", "", "app"],
                &[],
                "--drain-file: the path is empty",
            ),
            (
                &["app"],
                &[("DRAINIT_ON_DRAIN", "echo 'a")],
                "--on-drain: unbalanced ' (the command is split into words as a shell would, without expansion: quotes must pair up) (from DRAINIT_ON_DRAIN)",
            ),
            (
                &["--kill-after", "5s", "app"],
                &[("DRAINIT_STOP_COMMAND", "   ")],
                "--stop-command: the command is empty (from DRAINIT_STOP_COMMAND)",
            ),
            (
                &["app"],
                &[("DRAINIT_STOP_COMMAND", "nginx -s quit")],
                "--stop-command: needs a kill deadline (--kill-after or --stop-timeout): a stop command that hangs must not leave the app running (from DRAINIT_STOP_COMMAND)",
            ),
            (
                &["app"],
                &[("DRAINIT_ON_DRAIN_POST", "ftp://x/")],
                "--on-drain-post: 'ftp://x/': only http:// URLs are supported (expected http://HOST[:PORT][/PATH]) (from DRAINIT_ON_DRAIN_POST)",
            ),
        ];
        for (args, vars, want) in cases {
            let err = parse_env(args, vars).expect_err(&format!("{args:?} {vars:?}"));
            assert_eq!(err, *want, "{args:?} {vars:?}");
        }
    }

    #[test]
    fn a_non_utf8_value_names_its_option_or_variable() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(b"5\xffs".to_vec());
        let args = vec![
            "drainit".into(),
            "--grace".into(),
            bad.clone(),
            "app".into(),
        ];
        let err = parse(args, &Env(&[])).err().unwrap().to_string();
        assert_eq!(err, "--grace: '5\\xffs' is not valid UTF-8");
        for (var, flag) in [
            ("DRAINIT_DRAIN_DELAY", "--drain-delay"),
            ("DRAINIT_URL", "--url"),
        ] {
            let vars = [(OsString::from(var), bad.clone())];
            let mut args: Vec<OsString> = vec!["drainit".into()];
            if var == "DRAINIT_URL" {
                args.push("--healthcheck".into());
            } else {
                args.push("app".into());
            }
            let err = parse(args, &Env(&vars)).err().unwrap().to_string();
            assert_eq!(
                err,
                format!("{flag}: '5\\xffs' is not valid UTF-8 (from {var})")
            );
        }
        let vars = [(OsString::from("DRAINIT_LOG"), bad)];
        let err = parse(vec!["drainit".into(), "app".into()], &Env(&vars))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(err, "DRAINIT_LOG: '5\\xffs' is not valid UTF-8");
    }

    #[test]
    fn a_flag_wins_over_its_variable_and_an_empty_variable_is_unset() {
        let c = parse_env(&["-v", "app"], &[("DRAINIT_QUIET", "1")]).unwrap();
        assert_eq!(c.log, LevelFilter::Debug);
        let c = parse_env(&["-q", "app"], &[("DRAINIT_VERBOSE", "on")]).unwrap();
        assert_eq!(c.log, LevelFilter::Warn);
        let c = parse_env(&["app"], &[("DRAINIT_QUIET", "1")]).unwrap();
        assert_eq!(c.log, LevelFilter::Warn);
        let c = parse_env(&["-q", "app"], &[("DRAINIT_LOG", "Debug")]).unwrap();
        assert_eq!(c.log, LevelFilter::Debug);
        let c = parse_env(
            &["app"],
            &[("DRAINIT_VERBOSE", "0"), ("DRAINIT_QUIET", "1")],
        )
        .unwrap();
        assert_eq!(c.log, LevelFilter::Warn);
        let r = match parse_env(
            &["--grace", "7s", "app"],
            &[("DRAINIT_GRACE", "bogus"), ("DRAINIT_DRAIN_DELAY", "3s")],
        )
        .unwrap()
        .mode
        {
            Mode::Run(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(r.policy.grace, Duration::from_secs(7));
        assert_eq!(r.policy.drain.unwrap().delay, Duration::from_secs(3));
        let every_variable_empty: Vec<(&str, &str)> = OPTIONS
            .iter()
            .map(|o| (o.var, ""))
            .chain([(LOG_VAR, "")])
            .collect();
        let c = parse_env(&["app"], &every_variable_empty).unwrap();
        assert_eq!(c.log, LevelFilter::Info);
        assert_eq!(c.mode, parse_strs(&["app"]).unwrap().mode);
        let c = parse_env(&["--healthcheck"], &every_variable_empty).unwrap();
        assert_eq!(c.mode, parse_strs(&["--healthcheck"]).unwrap().mode);
    }

    #[test]
    fn stop_signal_and_drain_on_follow_one_rule() {
        for name in [
            "STOP", "CONT", "CHLD", "URG", "WINCH", "TSTP", "TTIN", "TTOU", "32", "33",
        ] {
            let err = parse_strs(&["--stop-signal", name, "app"]).unwrap_err();
            assert!(err.starts_with("--stop-signal: SIG"), "{name}: {err}");
            let err = parse_strs(&["--drain-on", name, "app"]).unwrap_err();
            assert!(err.starts_with("--drain-on: SIG"), "{name}: {err}");
        }
        for name in [
            "TERM", "INT", "QUIT", "HUP", "USR1", "USR2", "PWR", "RTMIN", "34",
        ] {
            assert!(
                parse_strs(&["--stop-signal", name, "app"]).is_ok(),
                "{name}"
            );
            assert!(parse_strs(&["--drain-on", name, "app"]).is_ok(), "{name}");
        }
        assert!(parse_strs(&["--stop-signal", "KILL", "app"]).is_ok());
        assert!(parse_strs(&["--drain-on", "KILL", "app"]).is_err());
    }

    #[test]
    fn unknown_variables_are_escaped() {
        use std::os::unix::ffi::OsStringExt;
        let names = [
            OsString::from("DRAINIT_X\n"),
            OsString::from_vec(b"DRAINIT_\xff".to_vec()),
        ];
        assert_eq!(unknown_variables(names), ["DRAINIT_X\\n", "DRAINIT_\\xff"]);
    }

    #[test]
    fn success_exit_takes_a_list_of_the_apps_codes() {
        let s = SuccessExit::parse("143, 130,143,0,255").unwrap();
        assert_eq!(s.codes, [143, 130, 0, 255]);
        assert!(s.contains(143) && s.contains(130) && !s.contains(1));
        let c = parse_strs(&["--success-exit", "143", "app"]).unwrap();
        assert_eq!(c.success_exit.unwrap().from, "--success-exit");
        let c = parse_env(&["app"], &[("DRAINIT_SUCCESS_EXIT", "143")]).unwrap();
        assert_eq!(c.success_exit.unwrap().from, "DRAINIT_SUCCESS_EXIT");
        for bad in [
            "", "143,", ",143", "256", "-1", "+1", "0x8f", "1e2", "143;130", "SIGTERM",
        ] {
            assert!(SuccessExit::parse(bad).is_err(), "{bad:?}");
        }
        for own in ["125", "126", "127", "137", "143,137"] {
            let e = SuccessExit::parse(own).unwrap_err();
            assert!(e.contains("cannot count as success"), "{own}: {e}");
        }
        let e = parse_strs(&["--success-exit", "143,x", "app"]).unwrap_err();
        assert_eq!(e, "--success-exit: 'x' is not an exit code (0-255)");
        let e = parse_env(&["app"], &[("DRAINIT_SUCCESS_EXIT", "x")]).unwrap_err();
        assert_eq!(
            e,
            "--success-exit: 'x' is not an exit code (0-255) (from DRAINIT_SUCCESS_EXIT)"
        );
        let long = "9".repeat(100_000);
        let e = SuccessExit::parse(&long).unwrap_err();
        assert_eq!(
            e,
            format!("'{}...' is not an exit code (0-255)", &long[..24])
        );
    }
}
