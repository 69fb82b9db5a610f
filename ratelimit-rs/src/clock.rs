//! Clocks: the system's monotonic clock, and a fake one for tests.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::time::{Span, Time, TICKS_PER_SECOND};

/// A source of monotonic time.
pub trait Clock: Send + Sync {
    /// The time now.
    fn now(&self) -> Time;
}

/// The operating system's monotonic clock, read so that it agrees with
/// Python's `time.monotonic()`.
///
/// On Linux and the BSDs that is `CLOCK_MONOTONIC`, on macOS
/// `CLOCK_UPTIME_RAW` (what CPython reads there, via `mach_absolute_time`
/// up to 3.12). Elsewhere (Windows) it falls back to `std::time::Instant`
/// counted from the first reading, which does *not* agree with
/// `time.monotonic()`: there, pass `now` always or never.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Time {
        Time::from_ticks(monotonic_ticks())
    }
}

#[cfg(unix)]
#[inline]
fn monotonic_ticks() -> i64 {
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_UPTIME_RAW;
    #[cfg(not(any(target_os = "macos", target_os = "ios")))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;

    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // every supported kernel provides, so the call cannot fail.
    unsafe { libc::clock_gettime(CLOCK, &mut ts) };
    // `time_t` and `c_long` are narrower than i64 on some targets.
    #[allow(clippy::unnecessary_cast)]
    let (secs, nanos) = (ts.tv_sec as i64, ts.tv_nsec as i64);
    nanos_to_ticks(secs, nanos)
}

#[cfg(not(unix))]
fn monotonic_ticks() -> i64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    let d = START.get_or_init(std::time::Instant::now).elapsed();
    nanos_to_ticks(d.as_secs() as i64, i64::from(d.subsec_nanos()))
}

/// Seconds and nanoseconds to ticks, rounding down.
#[inline]
fn nanos_to_ticks(secs: i64, nanos: i64) -> i64 {
    secs * TICKS_PER_SECOND + (nanos * TICKS_PER_SECOND) / 1_000_000_000
}

/// A clock that moves only when told to. Clones share one time, so a test
/// keeps a clone and steps the limiter's time exactly.
///
/// ```
/// use ratelimit::{Clock, FakeClock, Span, Time};
/// let clock = FakeClock::default();
/// let other = clock.clone();
/// clock.advance(Span::from_ticks(5).unwrap());
/// assert_eq!(other.now(), Time::from_ticks(5));
/// ```
#[derive(Clone, Debug, Default)]
pub struct FakeClock(Arc<AtomicI64>);

impl FakeClock {
    /// A fake clock reading `start`.
    pub fn starting_at(start: Time) -> Self {
        FakeClock(Arc::new(AtomicI64::new(start.ticks())))
    }

    /// Move the time forward by `span`.
    pub fn advance(&self, span: Span) {
        self.0.fetch_add(span.ticks(), Ordering::SeqCst);
    }

    /// Set the time (it may go backwards: the limiter copes).
    pub fn set(&self, to: Time) {
        self.0.store(to.ticks(), Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Time {
        Time::from_ticks(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_does_not_go_backwards() {
        let a = MonotonicClock.now();
        let b = MonotonicClock.now();
        assert!(b >= a);
        assert!(a.ticks() > 0);
    }

    #[test]
    fn nanos_round_down() {
        assert_eq!(nanos_to_ticks(1, 0), TICKS_PER_SECOND);
        assert_eq!(nanos_to_ticks(0, 500_000_000), TICKS_PER_SECOND / 2);
        assert_eq!(nanos_to_ticks(0, 1), 1);
        assert_eq!(nanos_to_ticks(0, 999_999_999), TICKS_PER_SECOND - 2);
    }
}
