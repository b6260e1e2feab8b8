//! What a bench run measured: [`Tally`] (per worker, then merged) and the [`Report`] printed
//! from it: throughput, latency percentiles and a histogram of latency buckets.
//!
//! Latencies of successful calls are recorded in microseconds in an HdrHistogram with three
//! significant figures, so a percentile is exact to within 0.1% and memory stays bounded
//! however long the run.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use kernel_errors::Error;
use serde_json::{Value, json};

use crate::colour::{BAD, Paint};
use crate::failure::Failure;
use crate::table::{Cell, Table, ms};

/// The highest latency recorded, in microseconds (an hour); longer ones count as this.
const HIGHEST_MICROS: u64 = 3_600_000_000;
/// Error codes counted apart; the rest are counted together as [`OTHER_CODES`].
const MAX_CODES: usize = 32;
/// Where error codes past [`MAX_CODES`] are counted.
const OTHER_CODES: &str = "(other codes)";
/// Codes are cut to this many characters (an error reply may carry anything).
const MAX_CODE: usize = 128;
/// The width of the longest bar of the histogram, in `#`.
const BAR_WIDTH: u64 = 40;
/// The percentiles reported, as (name, quantile).
const PERCENTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)];

/// Latencies and errors of the calls one worker made.
#[derive(Debug)]
pub(super) struct Tally {
    latencies: Histogram<u64>,
    errors: u64,
    codes: BTreeMap<String, u64>,
    first_error: Option<Error>,
}

impl Tally {
    pub(super) fn new() -> Result<Self, Failure> {
        Ok(Tally {
            latencies: Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).map_err(Failure::other)?,
            errors: 0,
            codes: BTreeMap::new(),
            first_error: None,
        })
    }

    /// Records one call: its latency if it succeeded, its error code if not.
    pub(super) fn record(&mut self, outcome: Result<Duration, Error>) {
        match outcome {
            Ok(latency) => {
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.latencies.saturating_record(micros.max(1));
            }
            Err(error) => {
                self.count_code(error.code(), 1);
                self.errors += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }

    fn count_code(&mut self, code: &str, n: u64) {
        let code: String = code.chars().take(MAX_CODE).collect();
        let key = if self.codes.contains_key(&code) || self.codes.len() < MAX_CODES {
            code
        } else {
            OTHER_CODES.to_owned()
        };
        *self.codes.entry(key).or_default() += n;
    }

    /// Adds `other`'s calls to these.
    pub(super) fn merge(&mut self, other: Tally) -> Result<(), Failure> {
        self.latencies
            .add(&other.latencies)
            .map_err(|e| Failure::other(format!("{e:?}")))?;
        self.errors += other.errors;
        for (code, n) in other.codes {
            self.count_code(&code, n);
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }

    /// Calls made, successful or not.
    pub(super) fn calls(&self) -> u64 {
        self.latencies.len() + self.errors
    }

    /// The first error seen, if any call failed.
    pub(super) fn into_first_error(self) -> Option<Error> {
        self.first_error
    }
}

/// One bucket of the histogram: the calls whose latency is at most `le_ms` and more than the
/// bucket before's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bucket {
    pub(super) le_ms: f64,
    pub(super) count: u64,
}

/// The numbers a run ends with.
#[derive(Debug)]
pub(super) struct Report {
    pub(super) ok: u64,
    errors: u64,
    seconds: f64,
    rate: f64,
    stopped_by: &'static str,
    mean_ms: f64,
    percentiles: Vec<(&'static str, f64)>,
    max_ms: f64,
    buckets: Vec<Bucket>,
    codes: BTreeMap<String, u64>,
}

impl Report {
    pub(super) fn new(tally: &Tally, elapsed: Duration, stopped_by_count: bool) -> Self {
        let latencies = &tally.latencies;
        let ok = latencies.len();
        let seconds = elapsed.as_secs_f64();
        let empty = latencies.is_empty();
        let at = |micros: u64| if empty { 0.0 } else { micros as f64 / 1000.0 };
        Report {
            ok,
            errors: tally.errors,
            seconds,
            rate: if seconds > 0.0 {
                (ok + tally.errors) as f64 / seconds
            } else {
                0.0
            },
            stopped_by: if stopped_by_count {
                "count"
            } else {
                "duration"
            },
            mean_ms: if empty {
                0.0
            } else {
                latencies.mean() / 1000.0
            },
            percentiles: PERCENTILES
                .iter()
                .map(|(name, q)| (*name, at(latencies.value_at_quantile(*q))))
                .collect(),
            max_ms: at(latencies.max()),
            buckets: buckets(latencies),
            codes: tally.codes.clone(),
        }
    }

    /// The report for `--json`.
    pub(super) fn json(&self) -> Value {
        let mut value = json!({
            "ok": self.ok,
            "errors": self.errors,
            "seconds": self.seconds,
            "calls_per_second": self.rate,
            "stopped_by": self.stopped_by,
            "mean_ms": self.mean_ms,
            "max_ms": self.max_ms,
            "histogram": self.buckets.iter()
                .map(|b| json!({"le_ms": b.le_ms, "count": b.count}))
                .collect::<Vec<_>>(),
            "error_codes": self.codes,
        });
        for (name, ms) in &self.percentiles {
            value[format!("{name}_ms")] = json!(ms);
        }
        value
    }

    /// The report for people: a summary table, the histogram, and errors by code.
    pub(super) fn render(&self, paint: Paint) -> String {
        let mut summary = Table::new([
            "CALLS", "ERRORS", "SECONDS", "CALLS/S", "MEAN", "P50", "P90", "P99", "P99.9", "MAX",
        ]);
        let mut row = vec![
            Cell::from(self.ok.to_string()),
            crate::cmd::monitor::count_of_errors(self.errors),
            Cell::from(format!("{:.2}", self.seconds)),
            Cell::from(format!("{:.1}", self.rate)),
            Cell::from(ms(self.mean_ms)),
        ];
        row.extend(self.percentiles.iter().map(|(_, v)| Cell::from(ms(*v))));
        row.push(Cell::from(ms(self.max_ms)));
        summary.styled_row(row);
        let mut text = summary.render(paint);
        if !self.buckets.is_empty() {
            let mut histogram = Table::new(["LATENCY", "CALLS", ""]);
            let most = self
                .buckets
                .iter()
                .map(|b| b.count)
                .max()
                .unwrap_or(1)
                .max(1);
            for bucket in &self.buckets {
                // Any calls at all get at least one mark.
                let width = (bucket.count * BAR_WIDTH).div_ceil(most);
                histogram.row(vec![
                    format!("<= {}", ms(bucket.le_ms)),
                    bucket.count.to_string(),
                    "#".repeat(usize::try_from(width).unwrap_or(0)),
                ]);
            }
            text.push('\n');
            text.push_str(&histogram.render(paint));
        }
        if !self.codes.is_empty() {
            let mut errors = Table::new(["ERROR CODE", "COUNT"]);
            for (code, n) in &self.codes {
                errors.styled_row(vec![
                    Cell::styled(code.clone(), BAD),
                    Cell::from(n.to_string()),
                ]);
            }
            text.push('\n');
            text.push_str(&errors.render(paint));
        }
        text
    }
}

/// The bucket bounds, in microseconds: 1-2-5 steps from 10µs up to an hour.
fn bounds() -> impl Iterator<Item = u64> {
    std::iter::successors(Some(10_u64), |&b| {
        let next = match b.to_string().as_bytes().first() {
            Some(b'1') => b * 2,
            Some(b'2') => b / 2 * 5,
            _ => b * 2,
        };
        (next <= HIGHEST_MICROS * 2).then_some(next)
    })
}

/// The recorded latencies in 1-2-5 buckets (`<= 1ms`, `<= 2ms`, `<= 5ms`, ...), from the
/// bucket of the fastest call to that of the slowest, empty buckets between included. Every
/// call is in exactly one bucket.
fn buckets(latencies: &Histogram<u64>) -> Vec<Bucket> {
    if latencies.is_empty() {
        return Vec::new();
    }
    let bounds: Vec<u64> = bounds().collect();
    let mut counts = vec![0_u64; bounds.len()];
    for value in latencies.iter_recorded() {
        // The histogram knows a value to within 0.1%: bucket it by the lowest value it may
        // have been, so that a round 10ms is `<= 10ms`.
        let micros = latencies.lowest_equivalent(value.value_iterated_to());
        let at = bounds.partition_point(|&bound| bound < micros);
        let at = at.min(bounds.len() - 1);
        counts[at] += value.count_at_value();
    }
    let first = counts.iter().position(|&n| n > 0).unwrap_or(0);
    let last = counts.iter().rposition(|&n| n > 0).unwrap_or(0);
    (first..=last)
        .map(|i| Bucket {
            le_ms: bounds[i] as f64 / 1000.0,
            count: counts[i],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally_of(millis: impl IntoIterator<Item = u64>) -> Tally {
        let mut tally = Tally::new().unwrap_or_else(|e| panic!("{e}"));
        for ms in millis {
            tally.record(Ok(Duration::from_millis(ms)));
        }
        tally
    }

    #[test]
    fn percentiles_are_within_the_histograms_precision() {
        let report = Report::new(&tally_of(1..=100), Duration::from_secs(2), true);
        assert_eq!(report.rate, 50.0);
        let near = |name: &str, want: f64| {
            let got = report
                .percentiles
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .unwrap_or_default();
            assert!(
                (got - want).abs() <= want * 0.001,
                "{name}: {got} for {want}"
            );
        };
        near("p50", 50.0);
        near("p99", 99.0);
        near("p999", 100.0);
        assert!((report.max_ms - 100.0).abs() <= 0.1);
        assert!((report.mean_ms - 50.5).abs() <= 0.1);
    }

    #[test]
    fn every_call_is_in_one_bucket_of_1_2_5_steps() {
        let tally = tally_of([1, 1, 2, 3, 4, 10, 40]);
        let report = Report::new(&tally, Duration::from_secs(1), true);
        let bounds: Vec<f64> = report.buckets.iter().map(|b| b.le_ms).collect();
        assert_eq!(bounds, [1.0, 2.0, 5.0, 10.0, 20.0, 50.0]);
        let counts: Vec<u64> = report.buckets.iter().map(|b| b.count).collect();
        assert_eq!(counts, [2, 1, 2, 1, 0, 1]);
        assert_eq!(counts.iter().sum::<u64>(), report.ok);
    }

    #[test]
    fn bounds_step_1_2_5() {
        let first: Vec<u64> = bounds().take(7).collect();
        assert_eq!(first, [10, 20, 50, 100, 200, 500, 1000]);
        assert!(bounds().last().unwrap_or_default() >= HIGHEST_MICROS);
    }

    #[test]
    fn errors_are_counted_by_code_within_a_bound() {
        let mut tally = tally_of([5]);
        for n in 0..(MAX_CODES + 10) {
            let code = format!("com.example.e{n}");
            tally.record(Err(Error::new(kernel_errors::Kind::NotFound, code, "y")));
        }
        let report = Report::new(&tally, Duration::from_secs(1), false);
        assert_eq!(report.codes.len(), MAX_CODES + 1);
        assert_eq!(report.codes[OTHER_CODES], 10);
        assert_eq!(report.json()["errors"], MAX_CODES as u64 + 10);
        assert_eq!(report.json()["stopped_by"], "duration");
    }

    #[test]
    fn the_human_report_has_a_histogram_and_no_colour_in_a_pipe() {
        let report = Report::new(&tally_of([1, 2, 2, 7]), Duration::from_secs(1), true);
        let text = report.render(Paint::OFF);
        assert!(text.contains("P99.9"), "{text}");
        assert!(
            text.contains("<= 2ms   2      ########################################"),
            "{text}"
        );
        assert!(text.contains("<= 5ms   0\n"), "{text}");
        assert!(!text.contains('\x1b'));
    }
}
