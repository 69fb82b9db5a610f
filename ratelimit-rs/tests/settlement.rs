//! Settling tickets: commit corrects, release refunds, each happens once.

use ratelimit::{Error, FakeClock, Limiter, Quota, Span, Time, TICKS_PER_SECOND};

const S: i64 = TICKS_PER_SECOND;

fn limiter() -> Limiter<FakeClock> {
    let l = Limiter::with_clock(Span::from_ticks(60 * S).unwrap(), FakeClock::default());
    l.configure("a", Quota::new(Some(10), Some(1000)).unwrap())
        .unwrap();
    l.configure("b", Quota::new(None, Some(500)).unwrap())
        .unwrap();
    l
}

fn at(secs: i64) -> Time {
    Time::from_ticks(secs * S)
}

#[test]
fn commit_corrects_down_and_up_on_every_key() {
    let l = limiter();
    let t = l.try_acquire_at(&["a", "b"], 300, at(0)).unwrap();
    l.commit_at(&t, 120, at(1)).unwrap();
    assert_eq!(l.usage_at("a", at(1)), Some((1, 120)));
    assert_eq!(l.usage_at("b", at(1)), Some((1, 120)));
    let u = l.try_acquire_at(&["b"], 100, at(2)).unwrap();
    l.commit(&u, 450).unwrap(); // more than reserved, more than the limit
    assert_eq!(l.usage_at("b", at(2)), Some((2, 570)));
    assert_eq!(l.headroom_at("b", at(2)).tokens, Some(0));
    assert!(l.try_acquire_at(&["b"], 0, at(3)).is_err());
}

#[test]
fn release_refunds_request_and_tokens() {
    let l = limiter();
    let t = l.try_acquire_at(&["a", "b"], 300, at(0)).unwrap();
    l.release_at(&t, at(30)).unwrap();
    assert_eq!(l.usage_at("a", at(30)), Some((0, 0)));
    assert_eq!(l.usage_at("b", at(30)), Some((0, 0)));
}

#[test]
fn settling_twice_fails_and_changes_nothing() {
    let l = limiter();
    let t = l.try_acquire_at(&["a"], 300, at(0)).unwrap();
    l.commit(&t, 100).unwrap();
    assert!(t.is_settled());
    assert_eq!(l.commit(&t, 5), Err(Error::AlreadySettled));
    assert_eq!(l.release(&t), Err(Error::AlreadySettled));
    assert_eq!(l.usage_at("a", at(0)), Some((1, 100)));
    let u = l.try_acquire_at(&["a"], 300, at(0)).unwrap();
    l.release(&u).unwrap();
    assert_eq!(l.release(&u), Err(Error::AlreadySettled));
    assert_eq!(l.commit(&u, 1), Err(Error::AlreadySettled));
    assert_eq!(l.usage_at("a", at(0)), Some((1, 100)));
}

#[test]
fn a_ticket_settles_only_where_it_was_issued() {
    let l = limiter();
    let other = limiter();
    let t = l.try_acquire_at(&["a"], 300, at(0)).unwrap();
    assert_eq!(other.commit(&t, 1), Err(Error::ForeignTicket));
    assert!(!t.is_settled());
    l.commit(&t, 1).unwrap();
}

#[test]
fn a_correction_after_the_window_is_moot() {
    let l = limiter();
    let t = l.try_acquire_at(&["a"], 300, at(0)).unwrap();
    let late = at(61);
    l.commit_at(&t, 900, late).unwrap();
    assert_eq!(l.usage_at("a", late), Some((0, 0)));
    // Without a time the stale bucket may still be held; the correction
    // must not leak into the window all the same.
    let u = l.try_acquire_at(&["a"], 300, at(100)).unwrap();
    l.try_acquire_at(&["a"], 1, at(200)).unwrap();
    l.commit(&u, 900).unwrap();
    assert_eq!(l.usage_at("a", at(200)), Some((1, 1)));
}

#[test]
fn headroom_returns_to_the_limit_after_the_window() {
    let l = limiter();
    for i in 0..10 {
        let t = l.try_acquire_at(&["a"], 100, at(i)).unwrap();
        l.commit_at(&t, 90, at(i)).unwrap();
    }
    assert_eq!(l.headroom_at("a", at(10)).requests, Some(0));
    assert_eq!(l.headroom_at("a", at(10)).tokens, Some(100));
    let h = l.headroom_at("a", at(70));
    assert_eq!((h.requests, h.tokens), (Some(10), Some(1000)));
}
