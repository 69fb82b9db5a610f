//! A key's limits: requests and tokens per window, each optional.

use std::num::NonZeroU64;

use crate::errors::Error;

/// Requests and tokens allowed per window; `None` is unlimited.
///
/// A zero limit cannot be built: it would deny everything forever, which is
/// a configuration mistake, not a limit.
///
/// ```
/// use ratelimit::Quota;
/// let q = Quota::new(Some(60), None).unwrap();
/// assert_eq!((q.requests(), q.tokens()), (Some(60), None));
/// assert!(Quota::new(Some(0), None).is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Quota {
    requests: Option<NonZeroU64>,
    tokens: Option<NonZeroU64>,
}

impl Quota {
    /// No limit on either.
    pub const UNLIMITED: Quota = Quota {
        requests: None,
        tokens: None,
    };

    /// A quota; fails if either limit is `Some(0)`.
    pub fn new(requests: Option<u64>, tokens: Option<u64>) -> Result<Self, Error> {
        let nonzero = |v: Option<u64>| match v {
            None => Ok(None),
            Some(v) => NonZeroU64::new(v).map(Some).ok_or(Error::ZeroLimit),
        };
        Ok(Quota {
            requests: nonzero(requests)?,
            tokens: nonzero(tokens)?,
        })
    }

    /// Requests per window, if limited.
    pub fn requests(&self) -> Option<u64> {
        self.requests.map(NonZeroU64::get)
    }

    /// Tokens per window, if limited.
    pub fn tokens(&self) -> Option<u64> {
        self.tokens.map(NonZeroU64::get)
    }
}

/// What a key has left now; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Headroom {
    /// Requests left in the window.
    pub requests: Option<u64>,
    /// Tokens left in the window.
    pub tokens: Option<u64>,
}

impl Headroom {
    /// No limit on either.
    pub const UNLIMITED: Headroom = Headroom {
        requests: None,
        tokens: None,
    };
}
