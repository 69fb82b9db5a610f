//! A reservation: one request and some tokens held on each limited key.

use std::sync::atomic::{AtomicBool, Ordering};

use smallvec::SmallVec;

/// Where a reservation sits on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hold {
    pub(crate) shard: u32,
    pub(crate) slot: u32,
    pub(crate) bucket: i64,
}

/// Proof of an admission, to be settled once with
/// [`Limiter::commit`](crate::Limiter::commit) or
/// [`Limiter::release`](crate::Limiter::release).
///
/// Settling is idempotent-safe: the first settlement wins and any later one
/// fails with [`Error::AlreadySettled`](crate::Error::AlreadySettled),
/// changing nothing. Dropping an unsettled ticket leaves the reservation
/// counted at its reserved size until it leaves the window.
#[derive(Debug)]
pub struct Ticket {
    pub(crate) limiter: u64,
    pub(crate) tokens: u64,
    pub(crate) holds: SmallVec<[Hold; 2]>,
    settled: AtomicBool,
}

impl Ticket {
    pub(crate) fn new(limiter: u64, tokens: u64, holds: SmallVec<[Hold; 2]>) -> Self {
        Ticket {
            limiter,
            tokens,
            holds,
            settled: AtomicBool::new(false),
        }
    }

    /// The tokens reserved on each key.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// How many limited keys hold this reservation (unconfigured keys, and
    /// repeats of a key, hold none).
    pub fn keys_held(&self) -> usize {
        self.holds.len()
    }

    /// Whether the ticket was committed or released.
    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    /// Mark settled; `false` if it already was.
    pub(crate) fn settle(&self) -> bool {
        !self.settled.swap(true, Ordering::AcqRel)
    }

    /// Mark settled while holding the lock that every settlement of this
    /// ticket takes first (its first hold's shard): a plain load and store
    /// suffice, the lock orders them.
    pub(crate) fn settle_locked(&self) -> bool {
        if self.settled.load(Ordering::Relaxed) {
            return false;
        }
        self.settled.store(true, Ordering::Release);
        true
    }
}
