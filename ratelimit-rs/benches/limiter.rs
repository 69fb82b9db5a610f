//! try_acquire + commit, in Rust, on one key, spread over 10,000 keys, and on
//! two keys per request; keys named by str, then by handle.
//!
//! `cargo bench --bench limiter`; the Python-side figures (with PyO3 and the
//! interpreter) come from `bench/limiter.py` at the repository root.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ratelimit::{Handle, Limiter, Quota, Span, TICKS_PER_SECOND};

fn limiter(keys: &[String]) -> Limiter {
    let l = Limiter::new(Span::from_ticks(60 * TICKS_PER_SECOND).unwrap());
    // Limits high enough never to refuse: the admission path is measured.
    let quota = Quota::new(Some(u64::MAX / 2), Some(u64::MAX / 2)).unwrap();
    for k in keys {
        l.configure(k, quota).unwrap();
    }
    l
}

fn acquire_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("acquire_commit");
    group.throughput(Throughput::Elements(1));
    for n in [1usize, 10_000] {
        let keys: Vec<String> = (0..n).map(|i| format!("deployment:{i}")).collect();
        let l = limiter(&keys);
        let mut i = 0usize;
        group.bench_function(format!("{n}_keys"), |b| {
            b.iter(|| {
                i = if i + 1 == n { 0 } else { i + 1 };
                let t = l.try_acquire(&[keys[i].as_str()], black_box(500)).unwrap();
                l.commit(&t, black_box(420)).unwrap();
            })
        });
    }
    // Two keys at once (deployment and caller), the gateway's usual shape.
    let keys: Vec<String> = vec!["deployment:a".into(), "key:caller".into()];
    let l = limiter(&keys);
    let pair = [keys[0].as_str(), keys[1].as_str()];
    group.bench_function("2_keys_per_request", |b| {
        b.iter(|| {
            let t = l.try_acquire(&pair, black_box(500)).unwrap();
            l.commit(&t, black_box(420)).unwrap();
        })
    });
    group.finish();

    // The same, each key resolved once to a handle.
    let mut group = c.benchmark_group("acquire_commit_by_handle");
    group.throughput(Throughput::Elements(1));
    for n in [1usize, 10_000] {
        let keys: Vec<String> = (0..n).map(|i| format!("deployment:{i}")).collect();
        let l = limiter(&keys);
        let handles: Vec<Handle> = keys.iter().map(|k| l.handle(k)).collect();
        let mut i = 0usize;
        group.bench_function(format!("{n}_keys"), |b| {
            b.iter(|| {
                i = if i + 1 == n { 0 } else { i + 1 };
                let t = l.try_acquire(&[&handles[i]], black_box(500)).unwrap();
                l.commit(&t, black_box(420)).unwrap();
            })
        });
    }
    let l = limiter(&keys);
    let pair = [l.handle(&keys[0]), l.handle(&keys[1])];
    group.bench_function("2_keys_per_request", |b| {
        b.iter(|| {
            let t = l.try_acquire(&pair, black_box(500)).unwrap();
            l.commit(&t, black_box(420)).unwrap();
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = acquire_commit
}
criterion_main!(benches);
