//! Memory: a key holds at most ~1025 buckets, and gives memory back.

use ratelimit::{FakeClock, Limiter, Quota, Span, Time, TICKS_PER_SECOND};

#[test]
fn a_busy_key_holds_at_most_max_buckets_and_shrinks_when_idle() {
    let window = 60 * TICKS_PER_SECOND;
    let l = Limiter::with_clock(Span::from_ticks(window).unwrap(), FakeClock::default());
    l.configure("a", Quota::UNLIMITED).unwrap();
    let width = l.bucket_width().ticks();
    let max = l.max_buckets_per_key();
    assert_eq!(max, 1025);
    // A request in every bucket for five windows, plus a few in between.
    let mut most = 0;
    for i in 0..(5 * 1024 + 7) {
        for j in 0..3 {
            let t = Time::from_ticks(i * width + j * (width / 3));
            let ticket = l.try_acquire_at(&["a"], 1, t).unwrap();
            l.commit(&ticket, 2).unwrap();
        }
        most = most.max(l.buckets_held("a").unwrap());
        assert!(l.heap_bytes("a").unwrap() <= max * 24, "bucket {i}");
    }
    assert_eq!(most, max);
    // Quiet for a window: one more call, and the memory goes back.
    let later = Time::from_ticks(7 * 1024 * width);
    l.try_acquire_at(&["a"], 1, later).unwrap();
    assert_eq!(l.buckets_held("a"), Some(1));
    assert!(l.heap_bytes("a").unwrap() <= max * 24 / 2 + 24);
}

#[test]
fn unconfigured_keys_cost_nothing() {
    let l = Limiter::new(Span::from_ticks(TICKS_PER_SECOND).unwrap());
    for i in 0..1000 {
        l.try_acquire(&[format!("k{i}")], 1).unwrap();
    }
    assert_eq!(l.len(), 0);
}

#[test]
fn a_key_costs_a_small_fixed_state() {
    // The per-key state next to its buckets (see docs/limiter.md).
    assert!(std::mem::size_of::<ratelimit::window::Window>() <= 72);
}
