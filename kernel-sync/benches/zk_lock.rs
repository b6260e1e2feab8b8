//! Lock acquire + release cycles per second for one uncontended client on ZooKeeper, against
//! the raw cost of the two writes a cycle needs (create + delete of an ephemeral sequential
//! node with the same client library), both measured by criterion in the same run.
//!
//! Criterion measures the two one after the other; on a machine whose load moves (CI, shared
//! runners) that alone can swing the ratio by ±20 %. So the ratio the target is checked on
//! comes from a second, interleaved measurement in the same run: blocks of raw cycles and
//! lock cycles alternate, each pair of blocks gives a ratio, and the median of those ratios
//! is printed as `ratio = … (target >= 0.80)`. Criterion's own ratio is printed beside it.
//!
//! Both come only when criterion measured both routines in this run: a name filter that skips
//! one (`cargo bench -- auth_check` skips both) prints which were not measured instead.
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use criterion::Criterion;
use kernel_sync::{LockBackendExt, Namespace, ZkLockBackend};
use zookeeper_client::{Acls, Client, CreateMode};

const GROUP: &str = "zk_lock";
/// Criterion's ids of the two routines the ratio compares.
const RAW: &str = "create_delete";
const LOCK: &str = "acquire_release";
/// Interleaved measurement: this many pairs of blocks…
const BLOCKS: usize = 60;
/// …of this many cycles each.
const BLOCK_CYCLES: u32 = 20;

fn main() {
    let hosts = support::engine_address("KERNEL_ZK_HOSTS");
    let runtime = support::runtime();
    let namespace = Namespace::new(support::unique_name("bench")).expect("a namespace");
    let (backend, raw, raw_dir) = runtime.block_on(async {
        let backend = ZkLockBackend::builder(hosts.clone(), namespace.clone())
            .connect()
            .await
            .expect("a ZooKeeper session for the lock");
        let raw = Client::connect(&hosts)
            .await
            .expect("a raw ZooKeeper session");
        let raw_dir = format!("/{namespace}/raw");
        raw.mkdir(
            &raw_dir,
            &CreateMode::Persistent.with_acls(Acls::anyone_all()),
        )
        .await
        .expect("the raw benchmark's directory");
        (backend, raw, raw_dir)
    });

    let home = support::criterion_home();
    let mut criterion = Criterion::default()
        .output_directory(&home)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .without_plots()
        .configure_from_args();
    let mut group = criterion.benchmark_group(GROUP);

    let prefix = format!("{raw_dir}/_c_0123-lock-");
    // Both loops run in a task on the runtime's workers, as a service's code does; driving
    // them from the benchmark's own thread would add thread hops to every await.
    let raw_cycles = |iterations: u64| {
        let (raw, prefix) = (raw.clone(), prefix.clone());
        let task = runtime.spawn(async move {
            let options = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
            let started = Instant::now();
            for _ in 0..iterations {
                let (_, sequence) = raw.create(&prefix, b"", &options).await.expect("create");
                raw.delete(&format!("{prefix}{sequence}"), None)
                    .await
                    .expect("delete");
            }
            started.elapsed()
        });
        runtime.block_on(task).expect("the raw loop")
    };
    let lock_cycles = |iterations: u64| {
        let backend = backend.clone();
        let task = runtime.spawn(async move {
            let started = Instant::now();
            for _ in 0..iterations {
                let guard = backend
                    .lock("uncontended")
                    .acquire()
                    .await
                    .expect("acquire");
                guard.unlock().await.expect("unlock");
            }
            started.elapsed()
        });
        runtime.block_on(task).expect("the lock loop")
    };
    // Which routines criterion ran in this run (a name filter may skip either or both).
    let measured = std::cell::RefCell::new(BTreeSet::new());
    group.bench_function(RAW, |b| {
        measured.borrow_mut().insert(RAW);
        b.iter_custom(raw_cycles);
    });
    group.bench_function(LOCK, |b| {
        measured.borrow_mut().insert(LOCK);
        b.iter_custom(lock_cycles);
    });
    group.finish();
    criterion.final_summary();
    if !support::measuring() {
        return; // criterion ran each routine once, or listed them: nothing was measured
    }
    let measured = measured.into_inner();
    let skipped: Vec<String> = [RAW, LOCK]
        .into_iter()
        .filter(|id| !measured.contains(id))
        .map(|id| format!("{GROUP}/{id}"))
        .collect();
    if !skipped.is_empty() {
        println!(
            "zk_lock: no ratio: {} not measured in this run (skipped by the name filter)",
            skipped.join(" and ")
        );
        return;
    }

    let estimates = support::typical_estimate(&home, GROUP, RAW)
        .and_then(|raw| Ok((raw, support::typical_estimate(&home, GROUP, LOCK)?)));
    let (raw_cycle, lock_cycle) = match estimates {
        Ok(estimates) => estimates,
        Err(error) => {
            println!("zk_lock: no ratio: {error}");
            return;
        }
    };
    println!(
        "zk_lock: criterion: acquire+release {:.0} cycles/s ({lock_cycle:?} each), raw create+delete {:.0}/s ({raw_cycle:?} each), ratio {:.2}",
        1.0 / lock_cycle.as_secs_f64(),
        1.0 / raw_cycle.as_secs_f64(),
        raw_cycle.as_secs_f64() / lock_cycle.as_secs_f64(),
    );

    let mut ratios = Vec::with_capacity(BLOCKS);
    let (mut raw_total, mut lock_total) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..BLOCKS {
        let raw_block = raw_cycles(u64::from(BLOCK_CYCLES));
        let lock_block = lock_cycles(u64::from(BLOCK_CYCLES));
        raw_total += raw_block;
        lock_total += lock_block;
        ratios.push(raw_block.as_secs_f64() / lock_block.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let cycles = (BLOCKS as u32) * BLOCK_CYCLES;
    println!(
        "zk_lock: interleaved: {cycles} cycles each, acquire+release {:.0} cycles/s, raw create+delete {:.0}/s, block ratios p10 {:.2} median {:.2} p90 {:.2}",
        f64::from(cycles) / lock_total.as_secs_f64(),
        f64::from(cycles) / raw_total.as_secs_f64(),
        ratios[BLOCKS / 10],
        ratios[BLOCKS / 2],
        ratios[BLOCKS * 9 / 10],
    );
    println!(
        "zk_lock: ratio = {:.2} (target >= 0.80)",
        ratios[BLOCKS / 2]
    );
}
