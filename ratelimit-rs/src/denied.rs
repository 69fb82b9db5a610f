//! A refusal, and when to come back.

use crate::time::Time;

/// Why a request was not admitted. Nothing was reserved on any key.
///
/// `key` is the position, in the keys asked for, of the key that refused
/// with the longest wait (on a tie, the first such key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// Not yet: the same request fits on every key at `at`, if nothing else
    /// is admitted meanwhile, and not one tick earlier.
    NotUntil {
        /// Position of the refusing key.
        key: usize,
        /// The earliest time the request fits.
        at: Time,
    },
    /// Never: the request asks for more tokens than the key's limit.
    Never {
        /// Position of the refusing key.
        key: usize,
    },
}

impl Denied {
    /// Position of the refusing key in the keys asked for.
    pub fn key(&self) -> usize {
        match *self {
            Denied::NotUntil { key, .. } | Denied::Never { key } => key,
        }
    }

    /// When the request fits; `None` if it never does.
    pub fn retry_at(&self) -> Option<Time> {
        match *self {
            Denied::NotUntil { at, .. } => Some(at),
            Denied::Never { .. } => None,
        }
    }

    /// Whether `self` waits longer than `other`; ties keep the earlier key.
    pub(crate) fn outlasts(&self, other: &Denied) -> bool {
        let wait = |d: &Denied| {
            d.retry_at()
                .map_or(i64::MAX as i128 + 1, |t| t.ticks() as i128)
        };
        let (a, b) = (wait(self), wait(other));
        a > b || (a == b && self.key() < other.key())
    }
}
