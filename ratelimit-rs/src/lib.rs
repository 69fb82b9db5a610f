//! Switchboard's rate limiter: an exact sliding-window limiter of requests
//! and tokens per key, with a pure-Rust core and a thin PyO3 face.
//!
//! - [`Limiter`]: keys, their [`Quota`]s, and all-or-none admission on
//!   several keys ([`Ticket`] or [`Denied`]), settled by commit or release.
//! - [`Handle`]: a key resolved once, so the hot path neither hashes nor
//!   compares its name; [`Key`] is what `try_acquire` takes (names, handles).
//! - [`window`]: one key's buckets; the algorithm and its bounds.
//! - [`Time`] and [`Span`]: ticks of 2^-30 s, exact from `f64` seconds.
//! - [`Clock`]: [`MonotonicClock`] (agrees with Python's `time.monotonic()`)
//!   and [`FakeClock`] for tests.
//!
//! The core knows nothing of Python; `python` (behind the `python` feature)
//! is the only module that touches PyO3, so `cargo test` runs without an
//! interpreter.

mod clock;
mod denied;
mod errors;
mod handle;
mod limiter;
mod quota;
mod ticket;
mod time;
pub mod window;

#[cfg(feature = "python")]
mod python;

pub use clock::{Clock, FakeClock, MonotonicClock};
pub use denied::Denied;
pub use errors::Error;
pub use handle::{Handle, Key, KeyRef};
pub use limiter::Limiter;
pub use quota::{Headroom, Quota};
pub use ticket::Ticket;
pub use time::{Span, Time, MAX_TIME_SECONDS, MAX_WINDOW_SECONDS, TICKS_PER_SECOND};

/// The crate's version, as built; the Python package re-exports it so a
/// running server can say which native core it loaded.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    #[test]
    fn version_is_the_package_version() {
        assert_eq!(super::VERSION, "0.1.0");
    }
}
