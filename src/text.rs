//! Text that reaches a log line or an answer from outside (a path, a value
//! from a variable, a file's content), shown so that it can neither split the
//! line nor drive the terminal: control characters, line separators,
//! backslashes and bytes that are not UTF-8 are written as escapes.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Shows its bytes escaped; see the module doc.
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(pub &'a [u8]);

/// A path, escaped for a log line.
pub fn path(path: &Path) -> Escaped<'_> {
    Escaped(path.as_os_str().as_bytes())
}

/// A string, escaped for a log line.
pub fn escaped(text: &str) -> Escaped<'_> {
    Escaped(text.as_bytes())
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '\t' => f.write_str("\\t")?,
                    '\\' => f.write_str("\\\\")?,
                    c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                        write!(f, "\\u{{{:x}}}", u32::from(c))?
                    }
                    c => fmt::Write::write_char(f, c)?,
                }
            }
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_and_invalid_utf8_are_escaped() {
        let show = |b: &[u8]| Escaped(b).to_string();
        assert_eq!(show(b"/tmp/draining"), "/tmp/draining");
        assert_eq!(show(b"a\nb\rc\td"), "a\\nb\\rc\\td");
        assert_eq!(show(b"\x1b[31mred"), "\\u{1b}[31mred");
        assert_eq!(show(b"back\\slash"), "back\\\\slash");
        assert_eq!(show(b"caf\xc3\xa9 \xff\xfe"), "caf\u{e9} \\xff\\xfe");
        assert_eq!(show("x\u{2028}y\u{85}".as_bytes()), "x\\u{2028}y\\u{85}");
        assert_eq!(path(Path::new("/a\nb")).to_string(), "/a\\nb");
    }
}
