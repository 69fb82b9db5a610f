//! Handles: a key resolved once means exactly what its name means.

use ratelimit::{Denied, FakeClock, KeyRef, Limiter, Quota, Span, Time, TICKS_PER_SECOND};

const S: i64 = TICKS_PER_SECOND;

fn limiter() -> Limiter<FakeClock> {
    Limiter::with_clock(Span::from_ticks(60 * S).unwrap(), FakeClock::default())
}

fn quota(rpm: Option<u64>, tpm: Option<u64>) -> Quota {
    Quota::new(rpm, tpm).unwrap()
}

fn at(secs: i64) -> Time {
    Time::from_ticks(secs * S)
}

#[test]
fn a_handle_admits_as_its_name_does() {
    let l = limiter();
    l.configure("a", quota(Some(2), Some(100))).unwrap();
    let a = l.handle("a");
    assert_eq!(a.key(), "a");
    let t = l.try_acquire_at(&[&a], 60, at(0)).unwrap();
    assert_eq!(t.keys_held(), 1);
    l.commit(&t, 30).unwrap();
    assert_eq!(l.usage_at("a", at(0)), Some((1, 30)));
    let denied = l.try_acquire_at(&[&a], 71, at(1)).unwrap_err();
    assert_eq!(denied, l.try_acquire_at(&["a"], 71, at(1)).unwrap_err());
    let t = l.try_acquire_at(&[&a], 70, at(1)).unwrap();
    l.release(&t).unwrap();
    assert_eq!(l.usage_at("a", at(1)), Some((1, 30)));
}

#[test]
fn a_handle_of_an_unconfigured_key_is_unlimited_until_it_is_configured() {
    let l = limiter();
    let late = l.handle("late");
    let t = l.try_acquire_at(&[&late], u64::MAX, at(0)).unwrap();
    assert_eq!(t.keys_held(), 0);
    assert!(l.is_empty());
    l.configure("late", quota(Some(1), None)).unwrap();
    let t = l.try_acquire_at(&[&late], 5, at(1)).unwrap();
    assert_eq!(t.keys_held(), 1);
    assert!(l.try_acquire_at(&[&late], 5, at(2)).is_err());
    // A handle taken now, after the key was configured, sees the same key.
    assert!(l.try_acquire_at(&[&l.handle("late")], 5, at(2)).is_err());
}

#[test]
fn a_handle_stays_valid_when_its_key_is_reconfigured() {
    let l = limiter();
    l.configure("a", quota(Some(10), Some(100))).unwrap();
    let a = l.handle("a");
    l.try_acquire_at(&[&a], 50, at(0)).unwrap();
    // Other keys, some in the same shard, move nothing.
    for i in 0..1_000 {
        l.configure(&format!("k{i}"), Quota::UNLIMITED).unwrap();
    }
    l.configure("a", quota(Some(10), Some(60))).unwrap();
    assert!(l.try_acquire_at(&[&a], 11, at(1)).is_err());
    let t = l.try_acquire_at(&[&a], 10, at(1)).unwrap();
    assert_eq!(t.keys_held(), 1);
    assert_eq!(l.usage_at("a", at(1)), Some((2, 60)));
}

#[test]
fn a_key_named_twice_by_handle_or_name_counts_once() {
    let l = limiter();
    l.configure("a", quota(Some(3), None)).unwrap();
    let (a, again) = (l.handle("a"), l.handle("a"));
    let t = l.try_acquire_at(&[&a, &a], 1, at(0)).unwrap();
    assert_eq!(t.keys_held(), 1);
    let t = l.try_acquire_at(&[&a, &again], 1, at(0)).unwrap();
    assert_eq!(t.keys_held(), 1);
    let t = l
        .try_acquire_at(&[KeyRef::Handle(&a), KeyRef::Name("a")], 1, at(0))
        .unwrap();
    assert_eq!(t.keys_held(), 1);
    assert_eq!(l.usage_at("a", at(0)), Some((3, 3)));
}

#[test]
fn names_and_handles_mix_and_refusals_give_positions() {
    let l = limiter();
    l.configure("roomy", quota(Some(10), Some(1000))).unwrap();
    l.configure("tight", quota(Some(10), Some(100))).unwrap();
    let tight = l.handle("tight");
    l.try_acquire_at(&[&tight], 80, at(0)).unwrap();
    let keys = [
        KeyRef::Name("roomy"),
        KeyRef::Name("free"),
        KeyRef::Handle(&tight),
    ];
    let denied = l.try_acquire_at(&keys, 50, at(1)).unwrap_err();
    assert!(matches!(denied, Denied::NotUntil { key: 2, .. }));
    assert_eq!(l.usage_at("roomy", at(1)), Some((0, 0)));
    let t = l.try_acquire_at(&keys, 20, at(1)).unwrap();
    assert_eq!(t.keys_held(), 2);
    l.commit(&t, 10).unwrap();
    assert_eq!(l.usage_at("tight", at(1)), Some((2, 90)));
}

#[test]
fn the_clock_path_takes_handles_too() {
    let l = limiter();
    l.configure("a", quota(Some(1), None)).unwrap();
    let a = l.handle("a");
    l.try_acquire(&[&a], 0).unwrap();
    assert!(l.try_acquire(&[a], 0).is_err());
}

#[test]
#[should_panic(expected = "handle was issued by another limiter")]
fn a_handle_of_another_limiter_is_refused() {
    let (l, other) = (limiter(), limiter());
    l.configure("a", Quota::UNLIMITED).unwrap();
    other.configure("a", Quota::UNLIMITED).unwrap();
    let a = other.handle("a");
    assert!(!l.owns(&a) && other.owns(&a));
    let _ = l.try_acquire_at(&[&a], 1, at(0));
}

#[test]
fn threads_share_handles() {
    use std::sync::Arc;
    let l = Arc::new(limiter());
    let keys = ["a", "b", "c"];
    for k in keys {
        l.configure(k, quota(Some(3_000), None)).unwrap();
    }
    let handles = Arc::new(keys.map(|k| l.handle(k)));
    let threads: Vec<_> = (0..3)
        .map(|n| {
            let (l, handles) = (l.clone(), handles.clone());
            std::thread::spawn(move || {
                let mut admitted = 0;
                for _ in 0..1_500 {
                    // Crossing orders: no deadlock, all or none.
                    let order = [&handles[n], &handles[(n + 1) % 3]];
                    if let Ok(t) = l.try_acquire_at(&order, 1, at(0)) {
                        admitted += 1;
                        l.commit(&t, 2).unwrap();
                    }
                }
                admitted
            })
        })
        .collect();
    let admitted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    // Each key is named by two of the three threads: 3,000 each at most.
    assert_eq!(admitted, 4_500);
    for k in keys {
        assert_eq!(l.usage_at(k, at(0)), Some((3_000, 6_000)));
    }
}
