//! Signal numbers, names and sets, as the Linux kernel sees them.
//!
//! libc's view is not enough for a PID 1: musl hides signals 32–34 from
//! `sigaddset`, and glibc and musl disagree on `SIGRTMIN`. Here a signal is
//! its kernel number (1–64) and a set is the kernel's 64-bit mask.

use std::fmt;

use crate::text::escaped;

/// The highest signal number on Linux.
pub const MAX: i32 = 64;
/// `SIGRTMIN` as `kill -l` and glibc programs name it (32 and 33 are kept
/// by the C libraries for themselves).
pub const RTMIN: i32 = 34;

pub const INT: i32 = 2;
pub const QUIT: i32 = 3;
pub const KILL: i32 = 9;
pub const PIPE: i32 = 13;
pub const TERM: i32 = 15;
pub const CHLD: i32 = 17;
pub const CONT: i32 = 18;
pub const STOP: i32 = 19;
pub const TSTP: i32 = 20;
pub const TTIN: i32 = 21;
pub const TTOU: i32 = 22;
pub const URG: i32 = 23;
pub const WINCH: i32 = 28;

/// Standard signal names on x86_64 Linux, indexed by number − 1.
const NAMES: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

/// Other names the shells accept for the same numbers.
const ALIASES: [(&str, i32); 4] = [("IOT", 6), ("CLD", 17), ("POLL", 29), ("UNUSED", 31)];

/// A signal number known to be in 1..=64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

impl Signal {
    pub const INT: Signal = Signal(INT);
    pub const QUIT: Signal = Signal(QUIT);
    pub const KILL: Signal = Signal(KILL);
    pub const PIPE: Signal = Signal(PIPE);
    pub const TERM: Signal = Signal(TERM);
    pub const CHLD: Signal = Signal(CHLD);
    pub const CONT: Signal = Signal(CONT);

    /// The signal with this number, if there is one.
    pub fn new(number: i32) -> Option<Signal> {
        (1..=MAX).contains(&number).then_some(Signal(number))
    }

    pub fn number(self) -> i32 {
        self.0
    }

    /// Parses `TERM`, `SIGTERM`, `sigterm`, `15`, `RTMIN+3`, `SIGRTMAX-1`.
    pub fn parse(text: &str) -> Result<Signal, String> {
        let trimmed = text.trim();
        let upper = trimmed.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        let shown = escaped(trimmed);
        if name.starts_with('-') && name.len() > 1 {
            return Err(format!("invalid signal '{shown}': negative"));
        }
        if let Ok(n) = name.parse::<i32>() {
            return Signal::new(n).ok_or_else(|| {
                format!("invalid signal '{shown}': no signal has number {n} (1-{MAX})")
            });
        }
        if let Some(n) = NAMES
            .iter()
            .position(|known| *known == name)
            .and_then(|i| i32::try_from(i).ok()?.checked_add(1))
        {
            return Ok(Signal(n));
        }
        if let Some((_, n)) = ALIASES.iter().find(|(alias, _)| *alias == name) {
            return Ok(Signal(*n));
        }
        let rt = |base: i32, rest: &str| -> Option<Signal> {
            if rest.is_empty() {
                return Signal::new(base);
            }
            let (sign, digits) = rest.split_at(1);
            let offset: i32 = digits.parse().ok()?;
            let n = match sign {
                "+" => base.checked_add(offset)?,
                "-" => base.checked_sub(offset)?,
                _ => return None,
            };
            (RTMIN..=MAX).contains(&n).then_some(Signal(n))
        };
        let parsed = if let Some(rest) = name.strip_prefix("RTMIN") {
            rt(RTMIN, rest)
        } else if let Some(rest) = name.strip_prefix("RTMAX") {
            rt(MAX, rest)
        } else {
            None
        };
        parsed.ok_or_else(|| format!("unknown signal '{shown}'"))
    }

    /// Whether drainit follows this stop signal with SIGCONT: a stopped
    /// process acts on it only once continued (KILL needs no help, CONT is one).
    pub fn followed_by_cont(self) -> bool {
        self != Signal::CONT && self != Signal::KILL
    }

    /// ", then SIGCONT" where `followed_by_cont`, for `--explain`.
    pub fn then_cont(self) -> &'static str {
        if self.followed_by_cont() {
            ", then SIGCONT"
        } else {
            ""
        }
    }

    /// Whether the kernel lets a process catch, block or ignore it.
    pub fn catchable(self) -> bool {
        self.0 != KILL && self.0 != STOP
    }

    /// The one rule for `--stop-signal` and `--drain-on`: a signal means
    /// "end" only if, left to its default action, it ends a process. `Err`
    /// says why this one does not. Signals whose default is to be ignored
    /// (CHLD, URG, WINCH), to stop (STOP, TSTP, TTIN, TTOU) or to continue
    /// (CONT) never end an app that has not asked for them, and 32 and 33 are
    /// kept by the C libraries for themselves (glibc: thread cancellation and
    /// `setuid` across threads), so an app never sees them as a request.
    /// SIGKILL passes: it ends the app (without a chance to finish).
    pub fn ends_a_process(self) -> Result<(), &'static str> {
        match self.0 {
            CHLD | URG | WINCH => Err("its default action is to be ignored, not to end a process"),
            STOP | TSTP | TTIN | TTOU => Err("it stops (suspends) a process instead of ending it"),
            CONT => Err("it resumes a stopped process instead of ending it"),
            32 | 33 => Err("the C library keeps it for itself (thread cancellation, set*id)"),
            _ => Ok(()),
        }
    }

    /// Whether this signal may be named in `--drain-on`: it must end a process
    /// by default (see [`Signal::ends_a_process`]) and reach drainit at all.
    pub fn can_start_a_drain(self) -> Result<(), &'static str> {
        self.ends_a_process()?;
        if self.catchable() {
            Ok(())
        } else {
            Err("it cannot be caught, so it never reaches drainit")
        }
    }

    /// The kernel's bit for this signal in a `sigset_t` (bit n−1 for signal n).
    fn bit(self) -> u64 {
        u32::try_from(self.0.saturating_sub(1))
            .ok()
            .and_then(|shift| 1u64.checked_shl(shift))
            .unwrap_or(0)
    }
}

impl fmt::Display for Signal {
    /// `SIGTERM`, `SIGRTMIN+2`, `SIGRTMAX`, or `SIG33` for the unnamed ones.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        let name = usize::try_from(n.saturating_sub(1))
            .ok()
            .and_then(|i| NAMES.get(i));
        match (n, name) {
            (1..=31, Some(name)) => write!(f, "SIG{name}"),
            (MAX, _) => write!(f, "SIGRTMAX"),
            (RTMIN, _) => write!(f, "SIGRTMIN"),
            (35..=49, _) => write!(f, "SIGRTMIN+{}", n.saturating_sub(RTMIN)),
            (50..MAX, _) => write!(f, "SIGRTMAX-{}", MAX.saturating_sub(n)),
            _ => write!(f, "SIG{n}"),
        }
    }
}

/// A set of signals, laid out as the kernel's `sigset_t` (bit n−1 for signal n).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigSet(pub u64);

impl SigSet {
    pub const EMPTY: SigSet = SigSet(0);

    /// What job control reacts to: SIGCHLD, SIGCONT and the stops of a terminal.
    pub const JOB_CONTROL: SigSet = SigSet(
        1 << (CHLD - 1) | 1 << (CONT - 1) | 1 << (TSTP - 1) | 1 << (TTIN - 1) | 1 << (TTOU - 1),
    );

    /// Every signal a process can block or catch: all but KILL and STOP.
    pub fn catchable() -> SigSet {
        SigSet::all().without(Signal::KILL).without(Signal(STOP))
    }

    /// Every signal, 1 to 64.
    pub fn all() -> SigSet {
        SigSet(!0)
    }

    pub fn of(signals: &[Signal]) -> SigSet {
        signals.iter().fold(SigSet::EMPTY, |set, s| set.with(*s))
    }

    pub fn with(self, s: Signal) -> SigSet {
        SigSet(self.0 | s.bit())
    }

    pub fn without(self, s: Signal) -> SigSet {
        SigSet(self.0 & !s.bit())
    }

    pub fn intersects(self, other: SigSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn contains(self, s: Signal) -> bool {
        self.0 & s.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Signal> {
        (1..=MAX)
            .filter_map(Signal::new)
            .filter(move |s| self.contains(*s))
    }

    /// Parses a list such as `TERM,INT` or `SIGTERM SIGUSR2`.
    pub fn parse(text: &str) -> Result<SigSet, String> {
        let mut set = SigSet::EMPTY;
        for word in text.split([',', ' ']).filter(|w| !w.is_empty()) {
            set = set.with(Signal::parse(word)?);
        }
        if set == SigSet::EMPTY {
            return Err("no signal named".to_string());
        }
        Ok(set)
    }
}

impl fmt::Display for SigSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_and_without_sig_and_numbers() {
        for text in ["TERM", "SIGTERM", "sigterm", " term ", "15"] {
            assert_eq!(Signal::parse(text), Ok(Signal::TERM), "{text}");
        }
        assert_eq!(Signal::parse("QUIT"), Ok(Signal::QUIT));
        assert_eq!(Signal::parse("SIGWINCH").map(Signal::number), Ok(28));
        assert_eq!(Signal::parse("PWR").map(Signal::number), Ok(30));
        assert_eq!(Signal::parse("CLD").map(Signal::number), Ok(17));
        assert_eq!(Signal::parse("64").map(Signal::number), Ok(64));
    }

    #[test]
    fn parses_real_time_names() {
        assert_eq!(Signal::parse("RTMIN").map(Signal::number), Ok(34));
        assert_eq!(Signal::parse("SIGRTMIN+3").map(Signal::number), Ok(37));
        assert_eq!(Signal::parse("RTMAX").map(Signal::number), Ok(64));
        assert_eq!(Signal::parse("RTMAX-2").map(Signal::number), Ok(62));
        assert!(Signal::parse("RTMIN+31").is_err());
        assert!(Signal::parse("RTMAX-31").is_err());
        assert!(Signal::parse("RTMIN*2").is_err());
    }

    #[test]
    fn rejects_unknown_names_and_numbers() {
        for text in ["TERMINATE", "0", "65", "-1", "", "SIG"] {
            assert!(Signal::parse(text).is_err(), "{text}");
        }
        assert_eq!(
            Signal::parse("FOO").unwrap_err(),
            "unknown signal 'FOO'".to_string()
        );
    }

    #[test]
    fn names_round_trip() {
        for n in 1..=MAX {
            let s = Signal::new(n).unwrap();
            let name = s.to_string();
            if n == 32 || n == 33 {
                assert_eq!(name, format!("SIG{n}"));
                continue;
            }
            assert_eq!(Signal::parse(&name), Ok(s), "{name}");
        }
    }

    #[test]
    fn sets_follow_the_kernel_layout() {
        let set = SigSet::of(&[Signal::new(1).unwrap(), Signal::TERM]);
        assert_eq!(set.0, 1 | 1 << 14);
        assert!(set.contains(Signal::TERM));
        assert!(!set.contains(Signal::INT));
        assert_eq!(set.to_string(), "SIGHUP,SIGTERM");
        assert!(!SigSet::catchable().contains(Signal::KILL));
        assert!(SigSet::catchable().contains(Signal::new(64).unwrap()));
        assert_eq!(SigSet::catchable().iter().count(), 62);
        assert_eq!(
            SigSet::parse("TERM, INT"),
            Ok(SigSet::of(&[Signal::TERM, Signal::INT]))
        );
        assert!(SigSet::parse(",").is_err());
    }

    #[test]
    fn job_control_set_is_the_five_signals() {
        let names = ["CHLD", "CONT", "TSTP", "TTIN", "TTOU"];
        let set = SigSet::of(&names.map(|n| Signal::parse(n).unwrap()));
        assert_eq!(SigSet::JOB_CONTROL, set);
        assert_eq!(
            SigSet::JOB_CONTROL.to_string(),
            "SIGCHLD,SIGCONT,SIGTSTP,SIGTTIN,SIGTTOU"
        );
        assert!(SigSet::JOB_CONTROL.intersects(SigSet::of(&[Signal::CONT])));
        assert!(!SigSet::JOB_CONTROL.intersects(SigSet::of(&[Signal::TERM])));
    }

    #[test]
    fn one_rule_says_which_signals_end_a_process() {
        let refused: Vec<i32> = (1..=MAX)
            .filter_map(Signal::new)
            .filter(|s| s.ends_a_process().is_err())
            .map(Signal::number)
            .collect();
        assert_eq!(refused, [17, 18, 19, 20, 21, 22, 23, 28, 32, 33]);
        assert!(Signal::KILL.ends_a_process().is_ok());
        assert!(Signal::KILL.can_start_a_drain().is_err());
        assert!(Signal::TERM.can_start_a_drain().is_ok());
        assert!(Signal::new(64).unwrap().can_start_a_drain().is_ok());
    }

    #[test]
    fn refusals_escape_what_was_typed() {
        let e = Signal::parse("TE\nRM").unwrap_err();
        assert_eq!(e, "unknown signal 'TE\\nRM'");
    }
}
