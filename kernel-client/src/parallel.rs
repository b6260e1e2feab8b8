//! Many calls at once with bounded concurrency, and what to make of their outcomes.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::hash::Hash;

use futures_util::StreamExt;
use kernel_errors::{Error, Kind};

/// How many calls [`parallel`] runs at once unless told otherwise (H2's default).
pub const DEFAULT_CONCURRENCY: usize = 10;

/// Runs `calls` (each under a key) with at most `concurrency` in flight, and returns every
/// outcome by key. No task is spawned: the calls are polled together by the awaiting task.
///
/// Each call keeps its own deadline and retries; this waits for all of them.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use kernel_client::{Client, parallel};
/// use kernel_proto::platform::{HealthRequest, HealthResponse};
/// use kernel_transport::InProcessTransport;
///
/// let client = Client::new(InProcessTransport::new());
/// let request = HealthRequest::default();
/// let services = ["com.example.a", "com.example.b"];
/// let calls = services.map(|s| (s, client.call::<HealthResponse>(s, "health", &request)));
/// let outcomes = parallel(calls, 8).await;
/// assert_eq!(outcomes.len(), 2);
/// assert!(outcomes.any_errors()); // nobody serves them
/// assert!(outcomes.get(&"com.example.a").unwrap().is_err());
/// # }
/// ```
pub async fn parallel<K, C, T>(
    calls: impl IntoIterator<Item = (K, C)>,
    concurrency: usize,
) -> Outcomes<K, T>
where
    K: Eq + Hash + Clone,
    C: IntoFuture<Output = Result<T, Error>>,
{
    let mut done: Vec<(usize, K, Result<T, Error>)> =
        futures_util::stream::iter(calls.into_iter().enumerate())
            .map(|(index, (key, call))| async move { (index, key, call.await) })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    done.sort_by_key(|(index, _, _)| *index);
    let outcomes: Vec<_> = done
        .into_iter()
        .map(|(_, key, outcome)| (key, outcome))
        .collect();
    let index = outcomes
        .iter()
        .enumerate()
        .map(|(i, (key, _))| (key.clone(), i))
        .collect();
    Outcomes { outcomes, index }
}

/// The outcome of each call of a [`parallel`] batch, in the order the calls were given.
#[derive(Debug)]
pub struct Outcomes<K, T> {
    outcomes: Vec<(K, Result<T, Error>)>,
    index: HashMap<K, usize>,
}

impl<K: Eq + Hash, T> Outcomes<K, T> {
    /// The outcome of the call under `key`.
    pub fn get(&self, key: &K) -> Option<&Result<T, Error>> {
        self.index.get(key).map(|&i| &self.outcomes[i].1)
    }

    /// How many calls there were.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// Whether there were no calls.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// Every outcome, in the order the calls were given.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &Result<T, Error>)> {
        self.outcomes.iter().map(|(key, outcome)| (key, outcome))
    }

    /// The failed calls' errors, in order.
    pub fn errors(&self) -> impl Iterator<Item = (&K, &Error)> {
        self.iter()
            .filter_map(|(key, outcome)| outcome.as_ref().err().map(|e| (key, e)))
    }

    /// Whether any call failed.
    pub fn any_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// Whether any call failed with an error whose kind and code are not in the lists: e.g.
    /// ignore `NotFound` when looking several things up.
    pub fn any_errors_ignoring(&self, kinds: &[Kind], codes: &[&str]) -> bool {
        self.errors()
            .any(|(_, e)| !kinds.contains(&e.kind()) && !codes.contains(&e.code()))
    }

    /// The batch as one result: `Ok` if every call succeeded, the error itself if one failed,
    /// and if several failed one error with `code` that lists them all, of their common kind
    /// (or `InternalServerError` if they differ), with each failed call's code as context.
    ///
    /// # Errors
    /// As described: the single or combined error of the failed calls.
    pub fn combined(&self, code: &'static str) -> Result<(), Error>
    where
        K: std::fmt::Debug,
    {
        let errors: Vec<_> = self.errors().collect();
        match errors.as_slice() {
            [] => Ok(()),
            [(_, single)] => Err((*single).clone()),
            [(_, first), ..] => {
                let kind = if errors.iter().all(|(_, e)| e.kind() == first.kind()) {
                    first.kind()
                } else {
                    Kind::InternalServerError
                };
                let description = errors
                    .iter()
                    .map(|(key, e)| format!("{key:?}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let combined = Error::new(
                    kind,
                    code,
                    format!(
                        "{} of {} calls failed: {description}",
                        errors.len(),
                        self.len()
                    ),
                );
                Err(errors
                    .iter()
                    .fold(combined, |acc, (_, e)| acc.with_context(e.code())))
            }
        }
    }

    /// Consumes the batch into `(key, outcome)` pairs, in order.
    pub fn into_vec(self) -> Vec<(K, Result<T, Error>)> {
        self.outcomes
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn outcomes_keep_input_order_and_concurrency_stays_bounded() {
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let calls = (0..20u32).map(|i| {
            let (in_flight, peak) = (&in_flight, &peak);
            (i, async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                if i % 5 == 0 {
                    Err(Error::not_found("x.missing", format!("{i}")))
                } else {
                    Ok(i * 2)
                }
            })
        });
        let outcomes = parallel(calls, 3).await;
        assert!(peak.load(Ordering::SeqCst) <= 3);
        let keys: Vec<_> = outcomes.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, (0..20).collect::<Vec<_>>());
        assert_eq!(outcomes.get(&7).unwrap().as_ref().unwrap(), &14);
        assert_eq!(outcomes.errors().count(), 4);
        assert!(!outcomes.any_errors_ignoring(&[Kind::NotFound], &[]));
        assert!(outcomes.any_errors_ignoring(&[], &["other.code"]));
    }

    #[tokio::test]
    async fn combined_is_ok_single_or_one_error_listing_all() {
        let ok = parallel([(1, async { Ok::<_, Error>(()) })], 2).await;
        assert!(ok.combined("x.batch").is_ok());

        let one = parallel(
            [(1, async { Err::<(), _>(Error::conflict("x.dup", "dup")) })],
            2,
        )
        .await;
        assert_eq!(one.combined("x.batch").unwrap_err().code(), "x.dup");

        let calls = [
            (1, Err::<(), _>(Error::timeout("x.slow", "slow"))),
            (2, Err(Error::not_found("x.gone", "gone"))),
        ]
        .map(|(k, r)| (k, async move { r }));
        let error = parallel(calls, 2).await.combined("x.batch").unwrap_err();
        assert_eq!(error.kind(), Kind::InternalServerError);
        assert_eq!(error.code(), "x.batch");
        assert_eq!(error.context(), ["x.slow", "x.gone"]);
    }
}
