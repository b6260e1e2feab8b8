//! [`Paint`]: colour in the human output, decided once per stream.
//!
//! Colour is on when the stream is a terminal, unless `--json` is given, `NO_COLOR` is set to
//! anything but the empty string (<https://no-color.org>) or `TERM` is `dumb`.
//! `--color always` forces it on, `--color never` off. JSON is never coloured.

use std::fmt::Display;
use std::io::IsTerminal;

use anstyle::{AnsiColor, Color, Style};

use crate::cli::Global;

/// When to colour: the `--color` flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColorChoice {
    /// When the stream is a terminal and neither `--json` nor `NO_COLOR` says otherwise.
    #[default]
    Auto,
    /// Always, even into a pipe.
    Always,
    /// Never.
    Never,
}

/// Whether one stream is coloured, and the styles to colour it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Paint {
    on: bool,
}

/// A good outcome: healthy, no errors.
pub(crate) const GOOD: Style = fg(AnsiColor::Green);
/// A bad outcome: unhealthy, an error kind, a count of errors.
pub(crate) const BAD: Style = fg(AnsiColor::Red).bold();
/// Worth a look: an unknown status.
pub(crate) const WARN: Style = fg(AnsiColor::Yellow);
/// A table header.
pub(crate) const HEADER: Style = Style::new().bold();
/// A name that lines are about: a topic.
pub(crate) const NAME: Style = fg(AnsiColor::Cyan);

const fn fg(colour: AnsiColor) -> Style {
    Style::new().fg_color(Some(Color::Ansi(colour)))
}

impl Paint {
    /// No colour.
    pub(crate) const OFF: Paint = Paint { on: false };

    /// The decision, from its inputs: `no_color` is whether `NO_COLOR` is set and not
    /// empty, or `TERM` is `dumb`.
    pub(crate) fn decide(choice: ColorChoice, json: bool, terminal: bool, no_color: bool) -> Self {
        let on = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && !json && !no_color,
        };
        Paint { on }
    }

    /// Colour for stdout under the global flags and the environment.
    pub(crate) fn stdout(global: &Global) -> Self {
        Paint::decide(
            global.color,
            global.json,
            std::io::stdout().is_terminal(),
            no_color_in_env(),
        )
    }

    /// Colour for stderr under the global flags and the environment.
    pub(crate) fn stderr(global: &Global) -> Self {
        Paint::decide(
            global.color,
            global.json,
            std::io::stderr().is_terminal(),
            no_color_in_env(),
        )
    }

    /// `text` in `style`, or as it is when colour is off.
    pub(crate) fn paint(self, text: impl Display, style: Style) -> String {
        if self.on && style != Style::new() {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    }
}

/// `NO_COLOR` set to something, or a terminal that takes no escape codes.
fn no_color_in_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
        || std::env::var_os("TERM").is_some_and(|t| t == "dumb")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_colours_a_terminal_only_without_json_or_no_color() {
        assert!(Paint::decide(ColorChoice::Auto, false, true, false).on);
        assert!(!Paint::decide(ColorChoice::Auto, false, false, false).on);
        assert!(!Paint::decide(ColorChoice::Auto, true, true, false).on);
        assert!(!Paint::decide(ColorChoice::Auto, false, true, true).on);
        assert!(Paint::decide(ColorChoice::Always, true, false, true).on);
        assert!(!Paint::decide(ColorChoice::Never, false, true, false).on);
    }

    #[test]
    fn piped_output_has_no_escape_codes() {
        let piped = Paint::decide(ColorChoice::Auto, false, false, false);
        assert_eq!(piped.paint("UNHEALTHY", BAD), "UNHEALTHY");
        let terminal = Paint::decide(ColorChoice::Auto, false, true, false);
        let painted = terminal.paint("UNHEALTHY", BAD);
        assert!(painted.starts_with('\x1b') && painted.contains("UNHEALTHY"));
        assert!(painted.ends_with("\x1b[0m"), "{painted:?}");
    }
}
