//! Medians, spreads and verdicts against the targets, as the benchmarks print them.

use std::fmt;

use super::process::Measured;

/// CPU time per call of the processes beside a client (µs), where known.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuPerCall {
    /// The server's, during the measured run.
    pub(crate) server: Option<f64>,
    /// The broker's, during the measured run, when it runs on this machine.
    pub(crate) broker: Option<f64>,
}

/// The median of some figures with their range: `0.73 (0.70–0.75)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Spread {
    /// `None` for no figures. The median of an even count is the mean of the middle two.
    pub(crate) fn of(figures: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut sorted: Vec<f64> = figures.into_iter().filter(|f| f.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let (first, last) = (*sorted.first()?, *sorted.last()?);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Some(Spread {
            median,
            min: first,
            max: last,
        })
    }
}

impl fmt::Display for Spread {
    /// The median alone when every figure is the same (one round), else with its range.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let precision = f.precision().unwrap_or(2);
        if self.min == self.max {
            write!(f, "{:.*}", precision, self.median)
        } else {
            write!(
                f,
                "{:.*} ({:.*}–{:.*})",
                precision, self.median, precision, self.min, precision, self.max
            )
        }
    }
}

/// A target a figure must meet: at least or at most a bound.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    pub(crate) fn met_by(self, figure: f64) -> bool {
        match self {
            Target::AtLeast(bound) => figure >= bound,
            Target::AtMost(bound) => figure <= bound,
        }
    }

    /// `target ≥ 0.85: met` (judged on `figure`, a median).
    pub(crate) fn verdict(self, figure: f64) -> String {
        self.verdict_in(figure, "")
    }

    /// `target ≤ 20 MB: met`, for a bound in `unit`.
    pub(crate) fn verdict_in(self, figure: f64, unit: &str) -> String {
        let (sign, bound) = match self {
            Target::AtLeast(bound) => ("≥", bound),
            Target::AtMost(bound) => ("≤", bound),
        };
        let outcome = if self.met_by(figure) {
            "met"
        } else {
            "NOT met"
        };
        format!("target {sign} {bound}{unit}: {outcome}")
    }
}

/// One measured run as a line: `raw     c64     12345 calls/s  p50   4932 µs  p99 ...`.
pub(crate) fn line(measured: &Measured, others: CpuPerCall) -> String {
    let mut line = format!(
        "{:<7} c{:<3} {:>9.0} calls/s  p50 {:>8.1} µs  p99 {:>8.1} µs  ({} calls in {:.1} s",
        measured.system,
        measured.concurrency,
        measured.calls_per_s,
        measured.p50_us,
        measured.p99_us,
        measured.calls,
        measured.elapsed_s,
    );
    match (measured.cpu_us_per_call, others.server) {
        (Some(client), Some(server)) => {
            line += &format!("; CPU per call: client {client:.0} µs, server {server:.0} µs");
            if let Some(broker) = others.broker {
                line += &format!(", broker {broker:.0} µs");
            }
        }
        (Some(process), None) => {
            line += &format!("; CPU per call {process:.1} µs");
            if let Some(broker) = others.broker {
                line += &format!(", broker {broker:.0} µs");
            }
        }
        _ => {}
    }
    line += ")";
    if measured.errors > 0 {
        line += &format!("  WARNING: {} calls failed", measured.errors);
    }
    if !measured.complete {
        line += "  WARNING: stopped at its time limit";
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_figure() {
        let spread = Spread::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            spread,
            Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(spread.to_string(), "2.00 (1.00–3.00)");
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(Spread::of([4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
    }

    #[test]
    fn one_figure_prints_without_a_range() {
        assert_eq!(format!("{:.1}", Spread::of([0.5]).unwrap()), "0.5");
        assert_eq!(Spread::of([]), None);
    }

    #[test]
    fn verdicts_say_which_way_the_bound_goes() {
        assert_eq!(Target::AtLeast(0.85).verdict(0.9), "target ≥ 0.85: met");
        assert_eq!(Target::AtMost(1.3).verdict(1.31), "target ≤ 1.3: NOT met");
        assert_eq!(
            Target::AtMost(20.0).verdict_in(13.8, " MB"),
            "target ≤ 20 MB: met"
        );
    }
}
