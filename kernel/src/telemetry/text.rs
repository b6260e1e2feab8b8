//! The fields of text log lines: `name=value` pairs with every control character escaped.
//!
//! tracing-subscriber's own field formatter writes a field given with `%` as it is, and
//! newlines in messages and errors too (it escapes terminal sequences there, and strings go
//! through `{:?}`), so a name from the wire logged with `%` could forge log lines or drive the
//! terminal of whoever reads the log. This formatter escapes every value, and does it a run of
//! plain text at a time rather than a character at a time: the two spans of a call format
//! their fields on the request path.

use std::error::Error as StdError;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// Formats the fields of text lines as tracing-subscriber's default does (`name=value`
/// separated by spaces, the message bare, string values quoted, an error followed by its
/// sources, `log.*` metadata left out), with every control character (C0, DEL and C1) and every
/// invisible character that reorders or splits text (bidirectional controls, zero-width
/// characters, line and paragraph separators, the byte-order mark) of every value written as
/// an escape: `\n`, `\r`, `\t`, `\x1b`, `\u{9b}`, `\u{202e}`; in a quoted string, `\"` and `\\`
/// too, so that a value cannot close its quotes and pass for more fields.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TextFields;

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let ansi = writer.has_ansi_escapes();
        // A span's fields go to a `String` of their own that starts empty: written piece by
        // piece it would grow half a dozen times, so the pieces are gathered on the stack and
        // written at once (an event's fields join the line's buffer, which this costs a copy).
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
            let name = shown(field);
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

    /// A string quoted, as tracing-subscriber writes strings, with its quotes and backslashes
    /// escaped too: a value cannot end early and pass for more fields.
    fn quoted(&mut self, value: &str) {
        self.result = self
            .out
            .write_char('"')
            .and_then(|()| Escaping::quoted(&mut *self.out).write_str(value))
            .and_then(|()| self.out.write_char('"'));
    }
}

impl<W: fmt::Write> Visit for Visitor<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.name(field) {
            if field.name() == "message" {
                self.value(format_args!("{value}"));
            } else {
                self.quoted(value);
            }
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn StdError + 'static)) {
        if self.name(field) {
            self.value(format_args!("{value}"));
            if let (Ok(()), Some(source)) = (self.result, value.source()) {
                let name = shown(field);
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

/// A field's name as a line shows it: a raw identifier without its `r#`.
fn shown(field: &Field) -> &'static str {
    let name = field.name();
    name.strip_prefix("r#").unwrap_or(name)
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
        let quoted = self.quoted;
        // No early exit: the compiler checks many bytes at once, and most values are plain.
        // Flagged: C0 and DEL, `"` and `\` when quoted, and the first bytes of the UTF-8 of
        // every character `is_escaped` may escape (C1: 0xc2; U+061C: 0xd8; U+2000 to U+2FFF:
        // 0xe2; U+FEFF: 0xef), which the slow path below then looks at.
        let maybe_escape = text.bytes().fold(false, |found, byte| {
            found
                | (byte < 0x20)
                | (byte == 0x7f)
                | (byte == 0xc2)
                | (byte == 0xd8)
                | (byte == 0xe2)
                | (byte == 0xef)
                | (quoted & ((byte == b'"') | (byte == b'\\')))
        });
        if !maybe_escape {
            return self.out.write_str(text);
        }
        let mut plain = 0;
        for (at, c) in text.char_indices() {
            if !(is_escaped(c) || (quoted && matches!(c, '"' | '\\'))) {
                continue;
            }
            self.out.write_str(&text[plain..at])?;
            match c {
                '\n' => self.out.write_str("\\n")?,
                '\r' => self.out.write_str("\\r")?,
                '\t' => self.out.write_str("\\t")?,
                '"' => self.out.write_str("\\\"")?,
                '\\' => self.out.write_str("\\\\")?,
                c if c.is_ascii() => write!(self.out, "\\x{:02x}", u32::from(c))?,
                c => write!(self.out, "\\u{{{:x}}}", u32::from(c))?,
            }
            plain = at + c.len_utf8();
        }
        self.out.write_str(&text[plain..])
    }
}

/// Whether a log line writes `c` as an escape wherever it is: control characters (C0, DEL,
/// C1), which terminals act on, and the invisible characters that reorder or split what a
/// reader sees (bidirectional controls, zero-width characters, line and paragraph separators,
/// the byte-order mark).
fn is_escaped(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// Gathers what is written in a buffer on the stack and writes it to `inner` in one piece when
/// a piece does not fit, or on flush; a piece larger than the buffer goes straight through.
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
    fn characters_that_reorder_or_split_text_are_escaped() {
        assert_eq!(escaped("a\u{202e}b"), r"a\u{202e}b");
        assert_eq!(escaped("\u{2028}\u{2029}"), r"\u{2028}\u{2029}");
        assert_eq!(
            escaped("\u{200b}\u{2066}\u{feff}\u{61c}"),
            r"\u{200b}\u{2066}\u{feff}\u{61c}"
        );
        // Other characters whose UTF-8 starts with the same bytes are not.
        assert_eq!(escaped("€ ☃ ！ ؀"), "€ ☃ ！ ؀");
    }

    #[test]
    fn escapes_land_between_multibyte_characters() {
        assert_eq!(escaped("☃\n名"), r"☃\n名");
        assert_eq!(escaped("é\u{9b}é"), r"é\u{9b}é");
        assert_eq!(quoted("名\u{9b}\"☃"), r#"名\u{9b}\"☃"#);
    }

    #[test]
    fn gathered_text_comes_out_whole_and_in_order() {
        let mut out = String::new();
        let mut gathered = Gathered::new(&mut out);
        // Filled exactly, then one more byte; a piece exactly the buffer's size; one larger.
        let exact = "x".repeat(GATHERED);
        let pieces = [
            &"a".repeat(GATHERED - 1),
            "b",
            "c",
            &exact,
            "d",
            &"e".repeat(GATHERED + 3),
            "é",
        ];
        for piece in pieces {
            gathered.write_str(piece).unwrap();
        }
        gathered.flush().unwrap();
        assert_eq!(out, pieces.concat());
    }

    #[test]
    fn more_gathered_text_comes_out_whole_and_in_order() {
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

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `f` logs through text lines with these fields, in colour or not.
    fn logged(ansi: bool, f: impl FnOnce()) -> String {
        use tracing_subscriber::layer::SubscriberExt;
        let output = Captured::default();
        let writer = output.clone();
        let lines = tracing_subscriber::fmt::layer()
            .fmt_fields(TextFields)
            .with_ansi(ansi)
            .without_time()
            .with_target(false)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(lines);
        tracing::subscriber::with_default(subscriber, f);
        let bytes = output.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_field_recorded_later_joins_the_others_escaped() {
        let out = logged(false, || {
            let span = tracing::info_span!("s", a = 1, b = tracing::field::Empty);
            span.record("b", "x\ny");
            let _s = span.entered();
            tracing::info!("m");
        });
        assert_eq!(out, " INFO s{a=1 b=\"x\\ny\"}: m\n");
    }

    #[test]
    fn names_messages_and_raw_identifiers_read_as_tracing_subscriber_writes_them() {
        let out = logged(false, || {
            tracing::info!(r#type = "t", n = 3, flag = true, message = "said\tonce");
        });
        // In the order given, as tracing-subscriber writes them: the message bare.
        assert_eq!(out, " INFO type=\"t\" n=3 flag=true said\\tonce\n");
    }

    #[test]
    fn in_colour_names_are_styled_and_values_still_escaped() {
        let out = logged(true, || {
            tracing::info!(caller = %"\u{1b}[2Jweb", "m");
        });
        assert!(
            out.contains("\u{1b}[3mcaller\u{1b}[0m\u{1b}[2m=\u{1b}[0m\\x1b[2Jweb"),
            "{out:?}"
        );
    }
}
