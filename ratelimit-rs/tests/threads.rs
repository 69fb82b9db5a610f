//! Threads: hammering shared keys never over-admits and never deadlocks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ratelimit::{FakeClock, Limiter, Quota, Span, TICKS_PER_SECOND};

#[test]
fn threads_on_one_key_admit_exactly_the_limit() {
    let clock = FakeClock::default();
    let l = Arc::new(Limiter::with_clock(
        Span::from_ticks(60 * TICKS_PER_SECOND).unwrap(),
        clock.clone(),
    ));
    l.configure("a", Quota::new(Some(5_000), Some(1_000_000)).unwrap())
        .unwrap();
    let admitted = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..4)
        .map(|n| {
            let (l, admitted, clock) = (l.clone(), admitted.clone(), clock.clone());
            std::thread::spawn(move || {
                for i in 0..3_000u64 {
                    if n == 0 && i % 100 == 0 {
                        clock.advance(Span::from_ticks(1_000).unwrap());
                    }
                    if let Ok(t) = l.try_acquire(&["a"], 100) {
                        admitted.fetch_add(1, Ordering::Relaxed);
                        if i % 3 == 0 {
                            l.commit(&t, 150).unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // All inside one window: exactly the request limit, never more.
    assert_eq!(admitted.load(Ordering::Relaxed), 5_000);
    let (requests, _) = l.usage("a").unwrap();
    assert_eq!(requests, 5_000);
}

#[test]
fn crossing_key_orders_do_not_deadlock() {
    let l = Arc::new(Limiter::new(Span::from_ticks(TICKS_PER_SECOND).unwrap()));
    for k in ["a", "b", "c"] {
        l.configure(k, Quota::UNLIMITED).unwrap();
    }
    let handles: Vec<_> = [["a", "b", "c"], ["c", "b", "a"], ["b", "c", "a"]]
        .into_iter()
        .map(|keys| {
            let l = l.clone();
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    let t = l.try_acquire(&keys, 1).unwrap();
                    l.release(&t).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
