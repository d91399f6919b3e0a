//! The command line: clap definitions (each option with its `DRAINIT_*`
//! variable) and a pure `Config::try_from` that checks everything up front.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{BoolishValueParser, OsStringValueParser};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser};

use crate::drain::{Drain, Policy};
use crate::error::Error;
use crate::health::{Health, Url};
use crate::signals::{SigSet, Signal};
use crate::time::{format_duration, parse_duration};

/// How much earlier than the orchestrator drainit escalates when only
/// `--stop-timeout` is given.
pub const ESCALATION_MARGIN: Duration = Duration::from_secs(1);

const AFTER_HELP: &str = "\
Exit codes: the app's own code; 128+N if it was killed by signal N; 127 if COMMAND is not \
found; 126 if it cannot be executed; 125 for drainit's own errors (bad options included).

Signals: every signal drainit receives but SIGCHLD goes to the app's process group (TSTP, TTIN \
and TTOU too: they never stop drainit itself). SIGTERM is followed by SIGCONT, so that a stopped \
app can act on it. With a drain option, a --drain-on signal starts the drain instead.

--healthcheck and --explain have no environment variable, so that a variable set for the whole \
task cannot turn the entrypoint into a health check. DRAINIT_LOG takes an env_logger filter \
(e.g. DRAINIT_LOG=debug).

Durations: 30s, 1500ms, 1m, 2.5s; a bare number means seconds.";

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
    #[arg(long, env = "DRAINIT_NO_GROUP", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub no_group: bool,

    /// How long processes the app leaves behind get after SIGTERM before SIGKILL
    #[arg(long, env = "DRAINIT_GRACE", value_name = "DURATION", allow_hyphen_values = true, default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,

    /// File created when a drain starts (health checks answer 503 while it exists); a stale one is removed at start
    #[arg(long, env = "DRAINIT_DRAIN_FILE", value_name = "PATH", value_parser = clap::value_parser!(PathBuf), help_heading = "Drain")]
    pub drain_file: Option<PathBuf>,

    /// How long the app keeps serving after the drain starts, before the stop signal [default: 0]
    #[arg(long, env = "DRAINIT_DRAIN_DELAY", value_name = "DURATION", allow_hyphen_values = true, value_parser = parse_duration, help_heading = "Drain")]
    pub drain_delay: Option<Duration>,

    /// Signal sent to the app when the delay ends, e.g. QUIT for nginx [default: the one that started the drain]
    #[arg(long, env = "DRAINIT_STOP_SIGNAL", value_name = "SIGNAL", value_parser = Signal::parse, help_heading = "Drain")]
    pub stop_signal: Option<Signal>,

    /// SIGKILL everything left this long after the drain starts; drainit then exits 137
    #[arg(long, env = "DRAINIT_KILL_AFTER", value_name = "DURATION", allow_hyphen_values = true, value_parser = parse_duration, help_heading = "Drain")]
    pub kill_after: Option<Duration>,

    /// The orchestrator's own budget (ECS stopTimeout, docker stop -t); without --kill-after, drainit kills 1s before it
    #[arg(long, env = "DRAINIT_STOP_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true, value_parser = parse_duration, help_heading = "Drain")]
    pub stop_timeout: Option<Duration>,

    /// Signals that start a drain [default: TERM]
    #[arg(long, env = "DRAINIT_DRAIN_ON", value_name = "SIGNALS", value_parser = SigSet::parse, help_heading = "Drain")]
    pub drain_on: Option<SigSet>,

    /// Check health and exit: 0 healthy, 1 unhealthy (draining, or --url not answering 2xx)
    #[arg(long, help_heading = "Health check")]
    pub healthcheck: bool,

    /// With --healthcheck: also GET this http:// URL and require a 2xx answer
    #[arg(
        long,
        env = "DRAINIT_URL",
        value_name = "URL",
        help_heading = "Health check"
    )]
    pub url: Option<String>,

    /// With --healthcheck: how long the GET may take
    #[arg(long, env = "DRAINIT_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true, default_value = "2s", value_parser = parse_duration, help_heading = "Health check")]
    pub timeout: Duration,

    /// Print the shutdown timeline these options give, and the checks made, then exit
    #[arg(long)]
    pub explain: bool,

    /// Log more: each forwarded signal, each reaped process
    #[arg(short, long, env = "DRAINIT_VERBOSE", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new(), conflicts_with = "quiet")]
    pub verbose: bool,

    /// Log only warnings and errors
    #[arg(short, long, env = "DRAINIT_QUIET", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub quiet: bool,

    /// The app to run, and its arguments (passed on byte for byte)
    #[arg(value_name = "COMMAND", trailing_var_arg = true, value_parser = OsStringValueParser::new())]
    pub command: Vec<OsString>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Quiet,
    Normal,
    Verbose,
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
    pub stop_timeout: Option<Duration>,
    pub kill_source: Option<KillSource>,
    pub policy: Policy,
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
    pub log: LogLevel,
}

/// The outcome of reading the command line.
pub enum Parsed {
    Config(Config),
    /// `--help` or `--version`: print this on stdout and exit 0.
    Print(String),
}

/// The `DRAINIT_*` variables among `names` that drainit does not know: most
/// likely a typo in a task definition, which would silently turn an option off.
pub fn unknown_variables<I: IntoIterator<Item = OsString>>(names: I) -> Vec<String> {
    let command = Cli::command();
    let known: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned())
        .chain(["DRAINIT_LOG".to_string()])
        .collect();
    let mut unknown: Vec<String> = names
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.starts_with("DRAINIT_") && !known.contains(n))
        .collect();
    unknown.sort();
    unknown
}

/// Parses `args` (program name first) with the environment, and checks it.
pub fn parse(args: Vec<OsString>) -> Result<Parsed, Error> {
    let matches = match Cli::command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    Ok(Parsed::Print(e.render().to_string()))
                }
                _ => Err(Error::Usage(one_line(&e, &args))),
            };
        }
    };
    let cli = Cli::from_arg_matches(&matches).map_err(|e| Error::Usage(one_line(&e, &args)))?;
    let from_command_line = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    Config::try_from_cli(cli, from_command_line, &matches).map(Parsed::Config)
}

/// clap's first line, with the variable named when the bad value came from one.
fn one_line(e: &clap::Error, args: &[OsString]) -> String {
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim();
    let mut line = first.strip_prefix("error: ").unwrap_or(first).to_string();
    if let Some(clap::error::ContextValue::String(arg)) =
        e.get(clap::error::ContextKind::InvalidArg)
    {
        let long = arg.split_whitespace().next().unwrap_or(arg);
        let on_command_line = args.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == long || a.starts_with(&format!("{long}=")))
        });
        let cmd = Cli::command();
        let env = cmd
            .get_arguments()
            .find(|a| {
                a.get_long()
                    .is_some_and(|l| long.strip_prefix("--") == Some(l))
            })
            .and_then(|a| a.get_env())
            .map(|v| v.to_string_lossy().into_owned());
        if let (false, Some(env)) = (on_command_line, env) {
            line.push_str(&format!(" (from {env})"));
        }
    }
    line
}

impl Config {
    fn try_from_cli(
        cli: Cli,
        from_command_line: impl Fn(&str) -> bool,
        matches: &ArgMatches,
    ) -> Result<Config, Error> {
        let usage = |text: String| Err(Error::Usage(text));
        let log = match (cli.verbose, cli.quiet) {
            (true, _) => LogLevel::Verbose,
            (_, true) => LogLevel::Quiet,
            _ => LogLevel::Normal,
        };
        if cli.healthcheck && cli.explain {
            return usage("--healthcheck and --explain cannot be used together".into());
        }
        if cli.healthcheck {
            if let Some(first) = cli.command.first() {
                return usage(format!(
                    "--healthcheck takes no COMMAND, got '{}'",
                    first.to_string_lossy()
                ));
            }
            if cli.timeout.is_zero() {
                return usage("--timeout must be longer than 0s".into());
            }
            let url = match &cli.url {
                Some(text) => {
                    Some(Url::parse(text).map_err(|e| Error::Usage(format!("--url: {e}")))?)
                }
                None => None,
            };
            return Ok(Config {
                mode: Mode::Healthcheck(Health {
                    drain_file: cli.drain_file,
                    url,
                    timeout: cli.timeout,
                }),
                log,
            });
        }
        for id in ["url", "timeout"] {
            if from_command_line(id) {
                return usage(format!("--{id} only applies with --healthcheck"));
            }
        }
        let launch = Launch::try_from_cli(&cli, matches)?;
        if cli.explain {
            return Ok(Config {
                mode: Mode::Explain(launch),
                log,
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
        })
    }
}

impl Launch {
    fn try_from_cli(cli: &Cli, matches: &ArgMatches) -> Result<Launch, Error> {
        let usage = |text: String| Err(Error::Usage(text));
        let given = |id: &str| {
            matches
                .value_source(id)
                .is_some_and(|s| s != ValueSource::DefaultValue)
        };
        let drain_options = [
            "drain_file",
            "drain_delay",
            "stop_signal",
            "kill_after",
            "stop_timeout",
            "drain_on",
        ];
        let draining = drain_options.iter().any(|id| given(id));

        let on = cli.drain_on.unwrap_or(SigSet::of(&[Signal::TERM]));
        for s in on.iter() {
            if !s.catchable() || s == Signal::CHLD {
                return usage(format!("--drain-on: {s} cannot start a drain"));
            }
        }
        let delay = cli.drain_delay.unwrap_or(Duration::ZERO);
        let show = |d: Duration| format_duration(d);

        if let (Some(kill), Some(stop)) = (cli.kill_after, cli.stop_timeout)
            && kill >= stop
        {
            return usage(format!(
                "--kill-after ({}) must be shorter than --stop-timeout ({}), or the orchestrator kills first",
                show(kill),
                show(stop)
            ));
        }
        let (kill_after, kill_source) = match (cli.kill_after, cli.stop_timeout) {
            (Some(kill), _) => (Some(kill), Some(KillSource::KillAfter)),
            (None, Some(stop)) => {
                if stop <= ESCALATION_MARGIN {
                    return usage(format!(
                        "--stop-timeout ({}) must be longer than {}: drainit escalates {} before it",
                        show(stop),
                        show(ESCALATION_MARGIN),
                        show(ESCALATION_MARGIN)
                    ));
                }
                (
                    Some(stop - ESCALATION_MARGIN),
                    Some(KillSource::StopTimeout),
                )
            }
            (None, None) => (None, None),
        };
        if let Some(stop) = cli.stop_timeout
            && delay >= stop
        {
            return usage(format!(
                "--drain-delay ({}) must be shorter than --stop-timeout ({})",
                show(delay),
                show(stop)
            ));
        }
        if let Some(kill) = kill_after
            && delay >= kill
        {
            let deadline = match kill_source {
                Some(KillSource::StopTimeout) => {
                    format!(
                        "the kill deadline ({}: --stop-timeout minus {})",
                        show(kill),
                        show(ESCALATION_MARGIN)
                    )
                }
                _ => format!("--kill-after ({})", show(kill)),
            };
            return usage(format!(
                "--drain-delay ({}) must be shorter than {deadline}",
                show(delay)
            ));
        }

        let drain = draining.then_some(Drain {
            on,
            delay,
            stop_signal: cli.stop_signal,
            kill_after,
        });
        Ok(Launch {
            command: cli.command.clone(),
            group: !cli.no_group,
            drain_file: cli.drain_file.clone(),
            stop_timeout: cli.stop_timeout,
            kill_source,
            policy: Policy {
                drain,
                grace: cli.grace,
            },
        })
    }
}

/// The command as one readable string, for log lines.
pub fn show_command(command: &[OsString]) -> String {
    command
        .iter()
        .map(|a| a.as_os_str())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Config, String> {
        let args = std::iter::once("drainit")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        match parse(args) {
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
}
