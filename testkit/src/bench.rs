//! What a benchmark asks of its command line: whether this run measures, lists, and which
//! benchmarks criterion's name filter selects.
//!
//! `cargo bench -- auth_check` passes `--bench auth_check` to every benchmark binary of the
//! workspace. Criterion skips the routines the filter does not match; a benchmark that prints a
//! ratio of two routines must then say which were skipped, and one that measures outside
//! criterion must skip itself as criterion would.

/// Criterion's mean estimate of `group/id` from this run, in nanoseconds per iteration, if it
/// wrote one: read from `<target>/criterion` (or `CRITERION_HOME`) of the workspace this runs
/// in, found at run time.
pub fn mean_nanos(group: &str, id: &str) -> Option<f64> {
    let home = std::env::var_os("CRITERION_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .or_else(|| crate::workspace_root().map(|root| root.join("target")))
                .map(|target| target.join("criterion"))
        })?;
    let path = home
        .join(group)
        .join(id.replace('/', "_"))
        .join("new")
        .join("estimates.json");
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    estimates["mean"]["point_estimate"].as_f64()
}

/// Which of `ids` this run did not measure (a name filter skipped them), as `a and b`; `None`
/// when every one was measured, so a ratio of them can be printed.
pub fn unmeasured(measured: &std::collections::BTreeSet<String>, ids: &[&str]) -> Option<String> {
    let skipped: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !measured.contains(*id))
        .collect();
    (!skipped.is_empty()).then(|| skipped.join(" and "))
}

/// Whether this run measures: `cargo bench` passes `--bench`. Under `cargo test`, and with
/// criterion's `--test`, `--list` or `--profile-time`, a benchmark only runs (or lists) its
/// routines, criterion writes no estimates, and no figure is printed.
pub fn measuring() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    args.iter().any(|arg| arg == "--bench")
        && !args
            .iter()
            .any(|arg| arg == "--test" || arg == "--list" || arg.starts_with("--profile-time"))
}

/// Whether criterion's `--list` was passed: print the benchmark's id instead of running it.
pub fn listing() -> bool {
    std::env::args().skip(1).any(|arg| arg == "--list")
}

/// Whether this run's arguments select the benchmark `id` (`group/name`), as criterion decides
/// for its own routines: every id without a filter, ids the filter (a regular expression)
/// matches, only the filter itself with `--exact`, none with `--ignored`. For a benchmark that
/// measures outside criterion, so that `cargo bench -- auth_check` skips it as criterion would.
pub fn selected(id: &str) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    selects(&args, id)
}

/// Criterion's options that take a value (`--sample-size 10`); the filter is the first
/// argument that is neither an option nor such a value.
const OPTIONS_WITH_VALUE: [&str; 20] = [
    "-c",
    "--color",
    "--colour",
    "-s",
    "--save-baseline",
    "-b",
    "--baseline",
    "--baseline-lenient",
    "--format",
    "--profile-time",
    "--load-baseline",
    "--sample-size",
    "--warm-up-time",
    "--measurement-time",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--plotting-backend",
    "--output-format",
];

fn selects(args: &[String], id: &str) -> bool {
    if args.iter().any(|arg| arg == "--ignored") {
        return false;
    }
    let Some(filter) = name_filter(args) else {
        return true;
    };
    if args.iter().any(|arg| arg == "--exact") {
        return id == filter;
    }
    // Criterion itself panics on a filter that is not a regular expression; a substring
    // match is the closest reading of it.
    regex::Regex::new(filter).map_or_else(|_| id.contains(filter), |regex| regex.is_match(id))
}

fn name_filter(args: &[String]) -> Option<&str> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            return args.next().map(String::as_str);
        }
        if OPTIONS_WITH_VALUE.contains(&arg.as_str()) {
            args.next(); // the option's value
        } else if !arg.starts_with('-') {
            return Some(arg);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_filter_selects_what_criterion_would() {
        let id = "zk_handover/handover";
        assert!(selects(&args("--bench"), id));
        assert!(selects(&args("--bench zk_handover"), id));
        assert!(selects(&args("--bench zk_"), id));
        assert!(selects(&args("--bench ^zk_.*over"), id));
        assert!(!selects(&args("--bench auth_check"), id));
        assert!(!selects(&args("--bench zk_handover --exact"), id));
        assert!(selects(&args("--bench zk_handover/handover --exact"), id));
        assert!(!selects(&args("--bench --ignored"), id));
    }

    #[test]
    fn an_option_value_is_not_the_filter() {
        let id = "zk_handover/handover";
        assert!(selects(&args("--bench --sample-size 10"), id));
        assert!(selects(&args("--bench --save-baseline main"), id));
        assert!(!selects(&args("--bench -s main auth_check"), id));
        assert!(selects(&args("--bench --measurement-time=3 handover"), id));
    }
}
