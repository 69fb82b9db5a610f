//! The limiter's errors: bad input, and misuse of a ticket or a handle.
//!
//! A denial is not an error: see [`crate::Denied`].

use std::fmt;

/// What the limiter refuses to do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Error {
    /// A window that is not finite, not positive, or too long (seconds given).
    InvalidWindow(f64),
    /// A time that is not finite or too far from zero (seconds given).
    InvalidTime(f64),
    /// A limit of zero: say "unlimited" with `None` instead.
    ZeroLimit,
    /// The ticket was already committed or released.
    AlreadySettled,
    /// The ticket was issued by another limiter.
    ForeignTicket,
    /// The handle was issued by another limiter.
    ForeignHandle,
    /// More keys than a limiter can hold (2^32).
    TooManyKeys,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidWindow(s) => write!(
                f,
                "window must be finite, positive and at most {} seconds, got {s}",
                crate::time::MAX_WINDOW_SECONDS
            ),
            Error::InvalidTime(s) => write!(
                f,
                "time must be finite and at most {} seconds from zero, got {s}",
                crate::time::MAX_TIME_SECONDS
            ),
            Error::ZeroLimit => f.write_str("a limit must be at least 1 (use None for unlimited)"),
            Error::AlreadySettled => f.write_str("ticket already committed or released"),
            Error::ForeignTicket => f.write_str("ticket was issued by another limiter"),
            Error::ForeignHandle => f.write_str("handle was issued by another limiter"),
            Error::TooManyKeys => f.write_str("too many keys for one limiter"),
        }
    }
}

impl std::error::Error for Error {}
