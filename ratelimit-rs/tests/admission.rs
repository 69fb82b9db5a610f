//! Admission: all or none over several keys, refusals and when to retry.

use ratelimit::{Denied, FakeClock, Limiter, Quota, Span, Time, TICKS_PER_SECOND};

const S: i64 = TICKS_PER_SECOND;

fn limiter(window_secs: i64) -> (Limiter<FakeClock>, FakeClock) {
    let clock = FakeClock::default();
    let window = Span::from_ticks(window_secs * S).unwrap();
    (Limiter::with_clock(window, clock.clone()), clock)
}

fn quota(rpm: Option<u64>, tpm: Option<u64>) -> Quota {
    Quota::new(rpm, tpm).unwrap()
}

fn at(secs: i64) -> Time {
    Time::from_ticks(secs * S)
}

#[test]
fn unconfigured_keys_are_unlimited_and_hold_nothing() {
    let (l, _) = limiter(60);
    let t = l.try_acquire_at(&["nobody"], u64::MAX, at(0)).unwrap();
    assert_eq!(t.keys_held(), 0);
    assert_eq!(l.headroom_at("nobody", at(0)).requests, None);
    assert!(l.is_empty());
    l.commit(&t, 5).unwrap();
}

#[test]
fn all_or_none_over_several_keys() {
    let (l, _) = limiter(60);
    l.configure("roomy", quota(Some(10), Some(1000))).unwrap();
    l.configure("tight", quota(Some(10), Some(100))).unwrap();
    l.try_acquire_at(&["tight"], 80, at(0)).unwrap();
    let denied = l
        .try_acquire_at(&["roomy", "free", "tight"], 50, at(1))
        .unwrap_err();
    assert_eq!(denied.key(), 2);
    // Nothing was reserved on the key that had room.
    assert_eq!(l.usage_at("roomy", at(1)), Some((0, 0)));
    let t = l.try_acquire_at(&["roomy", "tight"], 20, at(1)).unwrap();
    assert_eq!(t.keys_held(), 2);
    assert_eq!(l.usage_at("roomy", at(1)), Some((1, 20)));
    assert_eq!(l.usage_at("tight", at(1)), Some((2, 100)));
}

#[test]
fn a_key_named_twice_counts_once() {
    let (l, _) = limiter(60);
    l.configure("a", quota(Some(1), None)).unwrap();
    let t = l.try_acquire_at(&["a", "a"], 3, at(0)).unwrap();
    assert_eq!(t.keys_held(), 1);
    assert_eq!(l.usage_at("a", at(0)), Some((1, 3)));
}

#[test]
fn retry_at_is_exact_to_the_tick() {
    let (l, _) = limiter(60);
    let width = l.bucket_width().ticks();
    l.configure("a", quota(None, Some(100))).unwrap();
    l.try_acquire_at(&["a"], 60, at(0)).unwrap(); // bucket 0, stamped at `width`
    l.try_acquire_at(&["a"], 40, at(10)).unwrap();
    let denied = l.try_acquire_at(&["a"], 30, at(20)).unwrap_err();
    let fits = Time::from_ticks(width + 60 * S);
    assert_eq!(denied, Denied::NotUntil { key: 0, at: fits });
    // Not one tick earlier; then yes.
    let early = l
        .try_acquire_at(&["a"], 30, Time::from_ticks(fits.ticks() - 1))
        .unwrap_err();
    assert_eq!(early.retry_at(), Some(fits));
    l.try_acquire_at(&["a"], 30, fits).unwrap();
}

#[test]
fn the_refusing_key_is_the_one_with_the_longest_wait() {
    let (l, _) = limiter(60);
    for k in ["a", "b", "c"] {
        l.configure(k, quota(Some(1), Some(100))).unwrap();
    }
    l.try_acquire_at(&["a"], 1, at(0)).unwrap();
    l.try_acquire_at(&["b"], 1, at(5)).unwrap();
    l.try_acquire_at(&["c"], 1, at(5)).unwrap();
    let d = l.try_acquire_at(&["a", "b", "c"], 1, at(6)).unwrap_err();
    assert_eq!(d.key(), 1, "b and c wait equally long: the first is named");
    let d = l.try_acquire_at(&["c", "b", "a"], 1, at(6)).unwrap_err();
    assert_eq!(d.key(), 0);
    // "Never" outlasts any wait.
    let d = l.try_acquire_at(&["b", "a", "c"], 101, at(6)).unwrap_err();
    assert!(matches!(d, Denied::Never { key: 0 }));
}

#[test]
fn more_tokens_than_the_limit_never_fit() {
    let (l, _) = limiter(60);
    l.configure("a", quota(None, Some(100))).unwrap();
    let d = l.try_acquire_at(&["a"], 101, at(0)).unwrap_err();
    assert_eq!(d, Denied::Never { key: 0 });
    assert_eq!(d.retry_at(), None);
    l.try_acquire_at(&["a"], 100, at(0)).unwrap();
}

#[test]
fn reconfiguring_keeps_history() {
    let (l, _) = limiter(60);
    l.configure("a", quota(Some(10), Some(100))).unwrap();
    l.try_acquire_at(&["a"], 50, at(0)).unwrap();
    l.configure("a", quota(Some(10), Some(60))).unwrap();
    let h = l.headroom_at("a", at(1));
    assert_eq!((h.requests, h.tokens), (Some(9), Some(10)));
    assert!(l.try_acquire_at(&["a"], 11, at(1)).is_err());
    l.configure("a", Quota::UNLIMITED).unwrap();
    l.try_acquire_at(&["a"], 1_000, at(1)).unwrap();
    l.configure("a", quota(Some(10), Some(60))).unwrap();
    assert_eq!(l.headroom_at("a", at(2)).tokens, Some(0));
    assert_eq!(l.len(), 1);
}

#[test]
fn a_key_never_goes_back_in_time() {
    let (l, _) = limiter(60);
    l.configure("a", quota(Some(1), None)).unwrap();
    l.try_acquire_at(&["a"], 0, at(100)).unwrap();
    // An earlier `now` runs at the key's latest time: still inside the window.
    let d = l.try_acquire_at(&["a"], 0, at(0)).unwrap_err();
    assert!(d.retry_at().unwrap() > at(160));
}

#[test]
fn the_clock_is_read_when_no_time_is_given() {
    let (l, clock) = limiter(60);
    l.configure("a", quota(Some(1), None)).unwrap();
    clock.set(at(1000));
    l.try_acquire(&["a"], 0).unwrap();
    clock.advance(Span::from_ticks(59 * S).unwrap());
    assert!(l.try_acquire(&["a"], 0).is_err());
    assert_eq!(l.headroom("a").requests, Some(0));
    clock.advance(Span::from_ticks(S).unwrap());
    clock.advance(l.bucket_width());
    assert_eq!(l.headroom("a").requests, Some(1));
}
