//! The cost of checking a request's session: a cached `recover` plus `has_access`, a token
//! verification, and a bare moka `get` as the scale, measured in the same run. The auth
//! issue's target: a cached check at ≥ 1/20 of a bare `get`'s rate (1,000,000/s per core where
//! the `get` does 20,000,000/s), printed as that ratio.
//!
//! `cargo xtask bench criterion -- auth_check`, or `cargo bench -p kernel-auth --bench auth_check`.
//! One thread: the figures are per core.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)] // a benchmark, not a library

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput};
use kernel_auth::{Auth, Cached, Claims, Keyring, MemorySessionCache, SessionCache, TokenSigner};
use kernel_client::Client;
use kernel_transport::InProcessTransport;

const GROUP: &str = "auth_check";

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let signer = TokenSigner::generate("bench").unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = signer.sign(&Claims {
        session_id: "0123456789abcdef0123456789abcdef".into(),
        mechanism: "h2".into(),
        device: "bench".into(),
        user_id: "ada".into(),
        created: now,
        expires: now + 3600,
        renew: None,
        roles: vec!["CUSTOMER".into(), "ADMIN".into()],
    });
    let mut keys = Keyring::new();
    keys.insert(signer.key_id(), signer.public_key()).unwrap();
    let cache = MemorySessionCache::default();
    let session = "0123456789abcdef0123456789abcdef";
    let auth = runtime.block_on(async {
        cache
            .put(
                session,
                Cached::Token(token.clone()),
                Duration::from_secs(3600),
            )
            .await
            .unwrap();
        let client = Client::new(InProcessTransport::new());
        let auth = Auth::builder(&client)
            .keys(keys.clone())
            .fixed_keys()
            .cache(cache)
            .build();
        assert!(auth.recover(session).await.unwrap().is_some());
        auth
    });
    let bare: moka::sync::Cache<String, u64> = moka::sync::Cache::new(100_000);
    bare.insert(session.to_owned(), 1);

    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let measured = RefCell::new(BTreeSet::new());
    let mut group = criterion.benchmark_group(GROUP);
    group.throughput(Throughput::Elements(1));
    group.bench_function("moka_get", |b| {
        measured.borrow_mut().insert("moka_get".to_owned());
        b.iter(|| black_box(bare.get(black_box(session))));
    });
    group.bench_function("cached_check", |b| {
        measured.borrow_mut().insert("cached_check".to_owned());
        b.iter_custom(|checks| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..checks {
                    let mut scope = auth.scope("bench.service", "endpoint", None);
                    scope.recover_session(black_box(session)).await.unwrap();
                    black_box(scope.has_access("ADMIN.REPORTS"));
                }
                started.elapsed()
            })
        });
    });
    group.bench_function("token_verify", |b| {
        measured.borrow_mut().insert("token_verify".to_owned());
        let at = SystemTime::now();
        b.iter(|| black_box(keys.verify(black_box(&token), at).is_ok()));
    });
    group.finish();
    criterion.final_summary();
    if kernel_testkit::bench::measuring() {
        report(&measured.borrow());
    }
}

fn report(measured: &BTreeSet<String>) {
    let ids = ["moka_get", "cached_check", "token_verify"];
    if let Some(skipped) = kernel_testkit::bench::unmeasured(measured, &ids) {
        println!("auth_check: {skipped} not measured in this run: no ratio");
        return;
    }
    let per_second = |id| 1e9 / kernel_testkit::bench::mean_nanos(GROUP, id).unwrap_or(f64::NAN);
    let (get, check, verify) = (
        per_second("moka_get"),
        per_second("cached_check"),
        per_second("token_verify"),
    );
    println!(
        "auth_check: bare moka get {:.1} M/s; cached recover_session + has_access {:.2} M/s; \
         token verifications {:.1} k/s (one core)",
        get / 1e6,
        check / 1e6,
        verify / 1e3
    );
    println!(
        "auth_check: cached check / bare get = 1/{:.1} (target: at least 1/20, i.e. 1 M/s \
         where the get does 20 M/s)",
        get / check
    );
}
