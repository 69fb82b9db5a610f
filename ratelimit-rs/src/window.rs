//! One key's sliding window: a run of time buckets, oldest first.
//!
//! Time is cut into buckets of width `q` (the window over 1024, rounded up
//! to a tick). Bucket `b` covers `[b*q, (b+1)*q)`, and everything admitted
//! in it is *stamped* at its end, `(b+1)*q`: never earlier than the true
//! admission time. A bucket counts against the key at time `t` while its
//! stamp is inside the window, `stamp > t - window`, so it leaves the window
//! at `stamp + window`, at most `q` after its earliest entry would have.
//!
//! - Never over: every entry counts at least as long as its true time would,
//!   so the requests and tokens in any true window `(t - window, t]` are at
//!   most what the buckets hold at `t`, which admission keeps within limits.
//! - Nearly exact: a bucket counts at most `q` longer than its entries, so a
//!   request that fits an exact sliding log with a window `q` longer is
//!   admitted (utilisation at least `window / (window + q)`, 99.9 %).
//! - Bounded: only buckets with a stamp inside the window are kept, at most
//!   `ceil(window / q) + 1 = 1025`, and empty buckets are never stored.
//!
//! A key's time never goes backwards: a call whose `now` is earlier than the
//! latest time the key has seen runs at that latest time. That is
//! conservative too: the entry is stamped later than asked.

use std::collections::VecDeque;

use crate::quota::Quota;
use crate::time::{Span, Time};

/// Buckets per window; the window over this, rounded up, is the bucket width.
pub const BUCKETS_PER_WINDOW: i64 = 1024;

/// The shape shared by every key of a limiter: window and bucket width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    window: i64,
    width: i64,
    max_buckets: usize,
}

impl Geometry {
    /// The geometry of a window.
    pub fn new(window: Span) -> Self {
        let window = window.ticks();
        let width = (window + BUCKETS_PER_WINDOW - 1) / BUCKETS_PER_WINDOW;
        // Live bucket indices at `t` run from floor((t - window) / width)
        // to floor(t / width): at most ceil(window / width) + 1 of them.
        let max_buckets = ((window + width - 1) / width + 1) as usize;
        Geometry {
            window,
            width,
            max_buckets,
        }
    }

    /// The window.
    pub fn window(&self) -> Span {
        Span::from_ticks(self.window).expect("a geometry's window is a valid span")
    }

    /// The bucket width: how late, at most, capacity is reused.
    pub fn bucket_width(&self) -> Span {
        Span::from_ticks(self.width).expect("a bucket is at least one tick wide")
    }

    /// The most buckets one key ever holds.
    pub fn max_buckets(&self) -> usize {
        self.max_buckets
    }

    /// The bucket an admission at `t` goes in.
    #[inline]
    fn bucket_of(&self, t: Time) -> i64 {
        t.ticks().div_euclid(self.width)
    }

    /// The end of bucket `b`: the stamp of everything in it.
    #[inline]
    fn end(&self, b: i64) -> i64 {
        (b + 1) * self.width
    }

    /// The first time at which bucket `b` no longer counts.
    #[inline]
    fn expiry(&self, b: i64) -> Time {
        Time::from_ticks(self.end(b) + self.window)
    }
}

/// What a window says about one more request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// It fits now.
    Now,
    /// It fits once the buckets in the window now have expired up to this time.
    At(Time),
    /// It never fits: more tokens than the limit.
    Never,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    index: i64,
    requests: u64,
    tokens: u64,
}

/// One key's state.
#[derive(Debug)]
pub struct Window {
    quota: Quota,
    buckets: VecDeque<Bucket>,
    /// Sums over `buckets`.
    requests: u64,
    tokens: u64,
    /// The latest time this key has seen.
    latest: Time,
}

impl Window {
    /// An empty window with these limits.
    pub fn new(quota: Quota) -> Self {
        Window {
            quota,
            buckets: VecDeque::new(),
            requests: 0,
            tokens: 0,
            latest: Time::MIN,
        }
    }

    /// The limits.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Change the limits; the history stays.
    pub fn set_quota(&mut self, quota: Quota) {
        self.quota = quota;
    }

    /// Move the key's time to `now` (or keep it, if `now` is earlier) and drop
    /// the buckets that have left the window. Returns the key's time.
    #[inline]
    pub fn advance(&mut self, g: &Geometry, now: Time) -> Time {
        if now > self.latest {
            self.latest = now;
        }
        let mut dropped = false;
        while let Some(front) = self.buckets.front() {
            // No division on the hot path: compare with the front's expiry.
            if g.expiry(front.index) > self.latest {
                break;
            }
            self.requests = self.requests.saturating_sub(front.requests);
            self.tokens = self.tokens.saturating_sub(front.tokens);
            self.buckets.pop_front();
            dropped = true;
        }
        if dropped {
            self.shrink();
        }
        self.latest
    }

    /// Would one request of `tokens` fit, and if not, when? Call after
    /// [`Window::advance`]. Only expiry is assumed to happen meanwhile.
    pub fn fit(&self, g: &Geometry, tokens: u64) -> Fit {
        let excess_requests = match self.quota.requests() {
            Some(limit) => (self.requests.saturating_add(1)).saturating_sub(limit),
            None => 0,
        };
        let excess_tokens = match self.quota.tokens() {
            Some(limit) if tokens > limit => return Fit::Never,
            Some(limit) => self.tokens.saturating_add(tokens).saturating_sub(limit),
            None => 0,
        };
        if excess_requests == 0 && excess_tokens == 0 {
            return Fit::Now;
        }
        // The earliest expiry after which enough has left the window.
        let (mut freed_requests, mut freed_tokens) = (0u64, 0u64);
        for b in &self.buckets {
            freed_requests = freed_requests.saturating_add(b.requests);
            freed_tokens = freed_tokens.saturating_add(b.tokens);
            if freed_requests >= excess_requests && freed_tokens >= excess_tokens {
                return Fit::At(g.expiry(b.index));
            }
        }
        // Unreachable while the sums agree with the buckets: with every
        // bucket gone the window is empty, and the request is within limits.
        match self.buckets.back() {
            Some(b) => Fit::At(g.expiry(b.index)),
            None => Fit::Now,
        }
    }

    /// Record one request of `tokens` at the key's time; returns its bucket.
    #[inline]
    pub fn record(&mut self, g: &Geometry, tokens: u64) -> i64 {
        self.requests = self.requests.saturating_add(1);
        self.tokens = self.tokens.saturating_add(tokens);
        if let Some(back) = self.buckets.back_mut() {
            // Still in the newest bucket? (Its end is after the key's time.)
            if g.end(back.index) > self.latest.ticks() {
                back.requests = back.requests.saturating_add(1);
                back.tokens = back.tokens.saturating_add(tokens);
                return back.index;
            }
        }
        let index = g.bucket_of(self.latest);
        if self.buckets.len() == self.buckets.capacity() {
            // Grow by doubling, but never past the most a key can hold.
            let want = (self.buckets.len() * 2).clamp(4, g.max_buckets.max(4));
            self.buckets
                .reserve_exact(want.saturating_sub(self.buckets.len()).max(1));
        }
        self.buckets.push_back(Bucket {
            index,
            requests: 1,
            tokens,
        });
        index
    }

    /// Change a recorded request's tokens from `reserved` to `actual`, if
    /// its bucket is still held (otherwise it has left the window: moot).
    #[inline]
    pub fn adjust(&mut self, bucket: i64, reserved: u64, actual: u64) {
        if let Some(b) = self.find(bucket) {
            b.tokens = b.tokens.saturating_sub(reserved).saturating_add(actual);
            self.tokens = self.tokens.saturating_sub(reserved).saturating_add(actual);
        }
    }

    /// Take a recorded request of `reserved` tokens out entirely, if its
    /// bucket is still held.
    #[inline]
    pub fn refund(&mut self, bucket: i64, reserved: u64) {
        if let Some(b) = self.find(bucket) {
            b.requests = b.requests.saturating_sub(1);
            b.tokens = b.tokens.saturating_sub(reserved);
            self.requests = self.requests.saturating_sub(1);
            self.tokens = self.tokens.saturating_sub(reserved);
        }
    }

    /// Requests and tokens left now (`None`: unlimited). Call after
    /// [`Window::advance`].
    pub fn headroom(&self) -> (Option<u64>, Option<u64>) {
        (
            self.quota
                .requests()
                .map(|l| l.saturating_sub(self.requests)),
            self.quota.tokens().map(|l| l.saturating_sub(self.tokens)),
        )
    }

    /// Requests and tokens counted now. Call after [`Window::advance`].
    pub fn usage(&self) -> (u64, u64) {
        (self.requests, self.tokens)
    }

    /// Heap bytes held by the buckets.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }

    /// Buckets held.
    pub fn buckets_held(&self) -> usize {
        self.buckets.len()
    }

    #[inline]
    fn find(&mut self, index: i64) -> Option<&mut Bucket> {
        // Tickets are settled soon after they are issued: look at the newest
        // bucket first, then search.
        let last = self.buckets.len().checked_sub(1)?;
        if self.buckets[last].index == index {
            return self.buckets.get_mut(last);
        }
        let at = self
            .buckets
            .binary_search_by_key(&index, |b| b.index)
            .ok()?;
        self.buckets.get_mut(at)
    }

    /// Give memory back once a busy key has gone quiet.
    fn shrink(&mut self) {
        let cap = self.buckets.capacity();
        if cap > 16 && self.buckets.len() < cap / 4 {
            self.buckets.shrink_to(cap / 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(window: i64) -> Geometry {
        Geometry::new(Span::from_ticks(window).unwrap())
    }

    #[test]
    fn geometry_bounds_buckets() {
        let g = geometry(60 << 30);
        assert_eq!(g.bucket_width().ticks(), (60 << 30) / 1024);
        assert_eq!(g.max_buckets(), 1025);
        let g = geometry(1000);
        assert_eq!(g.bucket_width().ticks(), 1);
        assert_eq!(g.max_buckets(), 1001);
        let g = geometry(1025);
        assert_eq!(g.bucket_width().ticks(), 2);
        assert_eq!(g.max_buckets(), 514);
    }

    #[test]
    fn an_entry_counts_until_its_bucket_end_plus_the_window() {
        let g = geometry(1024 * 10); // width 10
        let mut w = Window::new(Quota::new(Some(1), None).unwrap());
        w.advance(&g, Time::from_ticks(13));
        assert_eq!(w.fit(&g, 0), Fit::Now);
        assert_eq!(w.record(&g, 0), 1);
        // Stamped at 20: counts while t < 20 + 10240.
        w.advance(&g, Time::from_ticks(20 + 10_240 - 1));
        assert_eq!(w.fit(&g, 0), Fit::At(Time::from_ticks(20 + 10_240)));
        w.advance(&g, Time::from_ticks(20 + 10_240));
        assert_eq!(w.fit(&g, 0), Fit::Now);
        assert_eq!(w.buckets_held(), 0);
    }

    #[test]
    fn fit_waits_for_enough_buckets_to_expire() {
        let g = geometry(1024); // width 1
        let mut w = Window::new(Quota::new(None, Some(10)).unwrap());
        for (t, n) in [(0, 3), (5, 3), (9, 4)] {
            w.advance(&g, Time::from_ticks(t));
            w.record(&g, n);
        }
        w.advance(&g, Time::from_ticks(100));
        assert_eq!(w.fit(&g, 3), Fit::At(Time::from_ticks(1 + 1024)));
        assert_eq!(w.fit(&g, 4), Fit::At(Time::from_ticks(6 + 1024)));
        assert_eq!(w.fit(&g, 7), Fit::At(Time::from_ticks(10 + 1024)));
        assert_eq!(w.fit(&g, 10), Fit::At(Time::from_ticks(10 + 1024)));
        assert_eq!(w.fit(&g, 11), Fit::Never);
    }

    #[test]
    fn adjust_and_refund_touch_only_live_buckets() {
        let g = geometry(1024);
        let mut w = Window::new(Quota::UNLIMITED);
        w.advance(&g, Time::from_ticks(0));
        let b0 = w.record(&g, 5);
        w.advance(&g, Time::from_ticks(7));
        let b7 = w.record(&g, 5);
        w.adjust(b0, 5, 9);
        assert_eq!(w.usage(), (2, 14));
        w.refund(b7, 5);
        assert_eq!(w.usage(), (1, 9));
        w.advance(&g, Time::from_ticks(1025));
        assert_eq!(w.usage(), (0, 0));
        w.adjust(b0, 9, 100);
        w.refund(b0, 9);
        assert_eq!(w.usage(), (0, 0));
    }

    #[test]
    fn time_never_goes_backwards() {
        let g = geometry(1024);
        let mut w = Window::new(Quota::UNLIMITED);
        assert_eq!(w.advance(&g, Time::from_ticks(50)), Time::from_ticks(50));
        assert_eq!(w.advance(&g, Time::from_ticks(10)), Time::from_ticks(50));
        assert_eq!(w.record(&g, 1), 50);
    }
}
