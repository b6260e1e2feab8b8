//! The fields of text log lines: `name=value` pairs with every control character escaped.
//!
//! tracing-subscriber's own field formatter escapes terminal sequences in an event's message
//! only; a span field given with `%` (as the `request` span's `caller`, `endpoint` and
//! `message_id` are, from the request's envelope) and newlines anywhere are written raw, so a
//! broker user could forge log lines or drive the terminal of whoever reads the log. This
//! formatter escapes every value, and does it a run of plain text at a time rather than a
//! character at a time: the two spans of a call format their fields on the request path.

use std::error::Error as StdError;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// Formats the fields of text lines as tracing-subscriber's default does (`name=value`
/// separated by spaces, the message bare, string values quoted, an error followed by its
/// sources, `log.*` metadata left out), with every control character (C0, DEL and C1) of every
/// value written as an escape: `\n`, `\r`, `\t`, `\x1b`, `\u{9b}`; in a quoted string, `\"`
/// and `\\` too, so that a value cannot close its quotes and pass for more fields.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TextFields;

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let ansi = writer.has_ansi_escapes();
        // The span's fields go to a `String` that starts empty: written piece by piece it would
        // grow half a dozen times, so the pieces are gathered on the stack and written at once.
        let mut out = Gathered::new(&mut writer);
        let mut visitor = Visitor {
            out: &mut out,
            ansi,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result?;
        out.flush()
    }
}

struct Visitor<'a, W> {
    out: &'a mut W,
    ansi: bool,
    first: bool,
    result: fmt::Result,
}

impl<W: fmt::Write> Visitor<'_, W> {
    /// Writes the separator and `name=` (nothing for the message), or returns `false` if the
    /// field is not written at all.
    fn name(&mut self, field: &Field) -> bool {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return false;
        }
        if !self.first {
            self.result = self.out.write_char(' ');
        }
        self.first = false;
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            self.result = self.result.and_then(|()| {
                if self.ansi {
                    write!(self.out, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")
                } else {
                    self.out.write_str(name)?;
                    self.out.write_char('=')
                }
            });
        }
        self.result.is_ok()
    }

    fn value(&mut self, value: fmt::Arguments<'_>) {
        self.result = Escaping::new(&mut *self.out).write_fmt(value);
    }
}

impl<W: fmt::Write> Visit for Visitor<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.name(field) {
            if field.name() == "message" {
                self.value(format_args!("{value}"));
            } else {
                // Quoted, as tracing-subscriber writes strings, with quotes and backslashes
                // escaped too: a value cannot end early and pass for more fields.
                self.result = (|| {
                    self.out.write_char('"')?;
                    Escaping::quoted(&mut *self.out).write_str(value)?;
                    self.out.write_char('"')
                })();
            }
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn StdError + 'static)) {
        if self.name(field) {
            self.value(format_args!("{value}"));
            if let Some(source) = value.source() {
                let name = field.name();
                let name = name.strip_prefix("r#").unwrap_or(name);
                self.value(format_args!(" {name}.sources={}", Sources(source)));
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.name(field) {
            self.value(format_args!("{value:?}"));
        }
    }
}

/// An error and its sources as `[first, second]`.
struct Sources<'a>(&'a (dyn StdError + 'static));

impl fmt::Display for Sources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('[')?;
        let mut next = Some(self.0);
        let mut first = true;
        while let Some(error) = next {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{error}")?;
            next = error.source();
        }
        f.write_char(']')
    }
}

/// Writes text through, with each control character replaced by its escape, and (for a
/// quoted string) each `"` and `\` too.
struct Escaping<'a, W: fmt::Write> {
    out: &'a mut W,
    quoted: bool,
}

impl<'a, W: fmt::Write> Escaping<'a, W> {
    fn new(out: &'a mut W) -> Self {
        Escaping { out, quoted: false }
    }

    fn quoted(out: &'a mut W) -> Self {
        Escaping { out, quoted: true }
    }
}

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Control characters are C0 and DEL (one byte each in UTF-8) and C1 (0xc2 0x80..=0x9f);
        // the runs of text between them go through whole, and most values are one run.
        let bytes = text.as_bytes();
        let quoted = self.quoted;
        // No early exit: the compiler checks many bytes at once, and most values are plain.
        let maybe_escape = bytes.iter().fold(false, |found, &byte| {
            found
                | (byte < 0x20)
                | (byte == 0x7f)
                | (byte == 0xc2)
                | (quoted & ((byte == b'"') | (byte == b'\\')))
        });
        if !maybe_escape {
            return self.out.write_str(text);
        }
        let (mut plain, mut at) = (0, 0);
        while let Some(&byte) = bytes.get(at) {
            let len = match byte {
                0x00..=0x1f | 0x7f => 1,
                b'"' | b'\\' if quoted => 1,
                0xc2 if matches!(bytes.get(at + 1), Some(0x80..=0x9f)) => 2,
                _ => {
                    at += 1;
                    continue;
                }
            };
            self.out.write_str(&text[plain..at])?;
            match text[at..].chars().next() {
                Some('\n') => self.out.write_str("\\n")?,
                Some('\r') => self.out.write_str("\\r")?,
                Some('\t') => self.out.write_str("\\t")?,
                Some('"') => self.out.write_str("\\\"")?,
                Some('\\') => self.out.write_str("\\\\")?,
                Some(c) if len == 1 => write!(self.out, "\\x{:02x}", u32::from(c))?,
                Some(c) => write!(self.out, "\\u{{{:x}}}", u32::from(c))?,
                None => {}
            }
            at += len;
            plain = at;
        }
        self.out.write_str(&text[plain..])
    }
}

/// Gathers what is written in a buffer on the stack and writes it to `inner` in one piece
/// when full or flushed; what does not fit goes straight through.
struct Gathered<'a, W: fmt::Write> {
    inner: &'a mut W,
    buffer: [u8; GATHERED],
    len: usize,
}

/// Room for the fields of a `request` or `call` span with names of ordinary length.
const GATHERED: usize = 512;

impl<'a, W: fmt::Write> Gathered<'a, W> {
    fn new(inner: &'a mut W) -> Self {
        Self {
            inner,
            buffer: [0; GATHERED],
            len: 0,
        }
    }

    fn flush(&mut self) -> fmt::Result {
        let gathered = std::str::from_utf8(&self.buffer[..self.len]).map_err(|_| fmt::Error)?;
        self.len = 0;
        self.inner.write_str(gathered)
    }
}

impl<W: fmt::Write> fmt::Write for Gathered<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if let Some(room) = self.buffer.get_mut(self.len..self.len + text.len()) {
            room.copy_from_slice(text.as_bytes());
            self.len += text.len();
            return Ok(());
        }
        self.flush()?;
        if text.len() < GATHERED {
            self.write_str(text)
        } else {
            self.inner.write_str(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        Escaping::new(&mut out).write_str(text).unwrap();
        out
    }

    fn quoted(text: &str) -> String {
        let mut out = String::new();
        Escaping::quoted(&mut out).write_str(text).unwrap();
        out
    }

    #[test]
    fn a_quoted_string_escapes_its_quotes_and_backslashes() {
        assert_eq!(
            quoted(r#"web" endpoint="admin\"#),
            r#"web\" endpoint=\"admin\\"#
        );
        assert_eq!(quoted("plain"), "plain");
        assert_eq!(quoted("a\nb"), r"a\nb");
        // Unquoted text keeps its quotes: a message says what it says.
        assert_eq!(escaped(r#"say "hi""#), r#"say "hi""#);
    }

    #[test]
    fn plain_text_goes_through_unchanged() {
        assert_eq!(escaped("com.example.web"), "com.example.web");
        assert_eq!(escaped(""), "");
        assert_eq!(escaped("naïve ☃ 名前"), "naïve ☃ 名前");
    }

    #[test]
    fn gathered_text_comes_out_whole_and_in_order() {
        let mut out = String::new();
        let mut gathered = Gathered::new(&mut out);
        let long = "x".repeat(GATHERED + 3);
        for piece in ["a", &"b".repeat(GATHERED - 2), "cd", &long, "é"] {
            gathered.write_str(piece).unwrap();
        }
        gathered.flush().unwrap();
        let expected = format!("a{}cd{long}é", "b".repeat(GATHERED - 2));
        assert_eq!(out, expected);
    }

    #[test]
    fn every_control_character_is_escaped() {
        assert_eq!(escaped("a\nb\r\tc"), r"a\nb\r\tc");
        assert_eq!(escaped("\u{1b}[2J\u{7}"), r"\x1b[2J\x07");
        assert_eq!(escaped("\u{0}\u{7f}"), r"\x00\x7f");
        assert_eq!(escaped("x\u{9b}31m"), r"x\u{9b}31m");
        assert_eq!(escaped("\n"), r"\n");
        // 0xc2 leads other characters too: those are not controls.
        assert_eq!(escaped("\u{a0}\u{bf}\u{80}"), "\u{a0}\u{bf}\\u{80}");
    }
}
