//! Durations on the command line: `500ms`, `5s`, `2m`; a bare number is seconds.

use std::time::Duration;

/// Parses `500ms`, `1.5s`, `2m` or `7` (seconds): more than zero, at most a day.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    match parse_or_zero(text)? {
        Duration::ZERO => Err(format!("`{}` must be more than 0", text.trim())),
        duration => Ok(duration),
    }
}

/// As [`parse`], but zero (`0s`) is allowed: for waits that may be skipped.
pub(crate) fn parse_or_zero(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (500ms, 5s, 2m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        other => return Err(format!("unknown unit `{other}` (ms, s, m)")),
    };
    if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("`{text}` must be at most a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_seconds() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("7"), Ok(Duration::from_secs(7)));
        assert!(parse("0s").is_err());
        assert!(parse("0.0000000001s").is_err(), "rounds to zero");
        assert_eq!(parse_or_zero("0s"), Ok(Duration::ZERO));
        assert!(parse_or_zero("2d").is_err());
        assert!(parse_or_zero("25h").is_err());
        assert!(parse("5h").is_err());
        assert!(parse("fast").is_err());
    }
}
