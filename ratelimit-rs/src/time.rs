//! Time as the limiter counts it: whole ticks of 2^-30 s (about 0.93 ns).
//!
//! A binary tick makes the conversion from Python's `float` seconds exact:
//! multiplying a finite `f64` by 2^30 only changes its exponent, so
//! `floor(seconds * 2^30)` is the true floor of the true value, with no
//! rounding anywhere. Times and windows built from the same floats therefore
//! compare exactly as the floats do, which is what lets the property tests
//! hold the limiter to an exact reference model.

use crate::errors::Error;

/// Ticks in one second.
pub const TICKS_PER_SECOND: i64 = 1 << 30;

const TICKS_PER_SECOND_F: f64 = TICKS_PER_SECOND as f64;

/// The largest time magnitude accepted, in seconds (2^32 s, about 136 years).
///
/// A monotonic clock counts from boot, so real readings are far below it.
pub const MAX_TIME_SECONDS: f64 = 4_294_967_296.0;

/// The largest window accepted, in seconds (2^31 s, about 68 years).
pub const MAX_WINDOW_SECONDS: f64 = 2_147_483_648.0;

/// A point on a monotonic time line, in ticks.
///
/// ```
/// use ratelimit::Time;
/// let t = Time::from_secs_f64(1.5).unwrap();
/// assert_eq!(t.ticks(), 3 << 29);
/// assert_eq!(t.as_secs_f64_ceil(), 1.5);
/// assert!(Time::from_secs_f64(f64::NAN).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(i64);

impl Time {
    /// The earliest time there is; the "latest time seen" of a fresh key.
    pub const MIN: Time = Time(i64::MIN);

    /// A time from ticks.
    pub const fn from_ticks(ticks: i64) -> Self {
        Time(ticks)
    }

    /// The time in ticks.
    pub const fn ticks(self) -> i64 {
        self.0
    }

    /// The tick containing `seconds` (rounded down, exactly).
    ///
    /// Fails on NaN, infinities and magnitudes above [`MAX_TIME_SECONDS`].
    pub fn from_secs_f64(seconds: f64) -> Result<Self, Error> {
        if !seconds.is_finite() || seconds.abs() > MAX_TIME_SECONDS {
            return Err(Error::InvalidTime(seconds));
        }
        // Exact: scaling by a power of two is lossless, and the result
        // (at most 2^62 in magnitude) fits an i64.
        Ok(Time((seconds * TICKS_PER_SECOND_F).floor() as i64))
    }

    /// The smallest `f64` that is not earlier than this time.
    ///
    /// Exact below 2^23 s of uptime; beyond, rounded up to the next float, so
    /// that `Time::from_secs_f64(t.as_secs_f64_ceil()) >= t` always holds.
    pub fn as_secs_f64_ceil(self) -> f64 {
        let mut f = self.0 as f64;
        if (f as i64) < self.0 {
            f = f.next_up();
        }
        f / TICKS_PER_SECOND_F
    }

    /// This time moved later by `span`.
    pub const fn after(self, span: Span) -> Self {
        Time(self.0 + span.0)
    }
}

/// A length of time, in ticks; always positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(i64);

impl Span {
    /// A span of `ticks` ticks; `None` unless `0 < ticks <= 2^61`.
    pub const fn from_ticks(ticks: i64) -> Option<Self> {
        if ticks > 0 && ticks <= 1 << 61 {
            Some(Span(ticks))
        } else {
            None
        }
    }

    /// The span in ticks.
    pub const fn ticks(self) -> i64 {
        self.0
    }

    /// The shortest span that is at least `seconds` long (rounded up to a tick,
    /// so a window built from it is never shorter than asked).
    ///
    /// Fails unless `0 < seconds <= MAX_WINDOW_SECONDS`.
    ///
    /// ```
    /// use ratelimit::{Span, TICKS_PER_SECOND};
    /// assert_eq!(Span::from_secs_f64_ceil(60.0).unwrap().ticks(), 60 * TICKS_PER_SECOND);
    /// assert_eq!(Span::from_secs_f64_ceil(1e-12).unwrap().ticks(), 1);
    /// assert!(Span::from_secs_f64_ceil(0.0).is_err());
    /// ```
    pub fn from_secs_f64_ceil(seconds: f64) -> Result<Self, Error> {
        if !(seconds > 0.0 && seconds <= MAX_WINDOW_SECONDS) {
            return Err(Error::InvalidWindow(seconds));
        }
        Ok(Span((seconds * TICKS_PER_SECOND_F).ceil() as i64))
    }

    /// The span in seconds (exact for spans below 2^53 ticks).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / TICKS_PER_SECOND_F
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_floors_exactly() {
        assert_eq!(Time::from_secs_f64(0.0).unwrap().ticks(), 0);
        assert_eq!(Time::from_secs_f64(-1e-12).unwrap().ticks(), -1);
        assert_eq!(Time::from_secs_f64(1e-12).unwrap().ticks(), 0);
        // 0.1 is slightly above 1/10: floor(0.1 * 2^30) = 107374182.
        assert_eq!(Time::from_secs_f64(0.1).unwrap().ticks(), 107_374_182);
        assert!(Time::from_secs_f64(f64::INFINITY).is_err());
        assert!(Time::from_secs_f64(MAX_TIME_SECONDS * 2.0).is_err());
    }

    #[test]
    fn ceil_round_trips_to_a_time_not_earlier() {
        for ticks in [
            0,
            1,
            -1,
            12_345,
            (1 << 53) + 1,
            (1 << 62) - 1,
            -(1 << 62) + 3,
        ] {
            let t = Time::from_ticks(ticks);
            let s = t.as_secs_f64_ceil();
            assert!(Time::from_secs_f64(s).unwrap() >= t, "{ticks}");
        }
    }

    #[test]
    fn spans_reject_nonsense() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, MAX_WINDOW_SECONDS * 2.0] {
            assert!(Span::from_secs_f64_ceil(bad).is_err(), "{bad}");
        }
        assert!(Span::from_ticks(0).is_none());
        assert_eq!(Span::from_secs_f64_ceil(0.5).unwrap().as_secs_f64(), 0.5);
    }
}
