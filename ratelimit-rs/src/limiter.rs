//! The limiter: keys, their windows, and admission on several keys at once.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;

use crate::clock::{Clock, MonotonicClock};
use crate::denied::Denied;
use crate::errors::Error;
use crate::handle::{Handle, Key, KeyRef, UNRESOLVED};
use crate::quota::{Headroom, Quota};
use crate::ticket::{Hold, Ticket};
use crate::time::{Span, Time};
use crate::window::{Fit, Geometry, Window};

/// Tells tickets of one limiter from another's.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Keys are spread over this many independently locked shards.
const SHARDS: usize = 32;

/// An exact sliding-window limiter of requests and tokens per key.
///
/// Keys are configured with [`Limiter::configure`]; a key never configured is
/// unlimited and costs nothing. [`Limiter::try_acquire`] reserves one request
/// and some tokens on every limited key it names, or on none of them.
///
/// Thread-safe: keys live in 32 shards, each behind its own lock; a request
/// naming keys in several shards locks them in shard order, so crossing
/// requests cannot deadlock. One key's decision takes one lock.
///
/// ```
/// use ratelimit::{Clock, FakeClock, Limiter, Quota, Span, TICKS_PER_SECOND};
/// let clock = FakeClock::default();
/// let limiter = Limiter::with_clock(Span::from_ticks(60 * TICKS_PER_SECOND).unwrap(), clock.clone());
/// limiter.configure("deployment:a", Quota::new(Some(2), Some(1000)).unwrap()).unwrap();
///
/// let ticket = limiter.try_acquire(&["deployment:a", "key:unlimited"], 600).unwrap();
/// limiter.commit(&ticket, 250).unwrap(); // the call used fewer tokens
/// let second = limiter.try_acquire(&["deployment:a"], 700).unwrap();
/// let denied = limiter.try_acquire(&["deployment:a"], 1).unwrap_err(); // 2 requests per window
/// assert_eq!(denied.key(), 0);
/// assert!(denied.retry_at().unwrap() > clock.now());
/// limiter.release(&second).unwrap(); // the call never happened
/// assert!(limiter.release(&second).is_err()); // settled once only
/// ```
pub struct Limiter<C = MonotonicClock> {
    id: u64,
    geometry: Geometry,
    clock: C,
    hasher: foldhash::fast::RandomState,
    shards: Box<[Padded<Mutex<Shard>>]>,
    keys: AtomicUsize,
}

/// One lock's worth of keys: their names and windows.
struct Shard {
    index: HashTable<(Box<str>, u32)>,
    /// Boxed, so that a key's window never moves: a handle may ask the CPU
    /// to fetch it before taking the lock.
    #[allow(clippy::vec_box)]
    windows: Vec<Box<Window>>,
}

impl Shard {
    #[inline]
    fn find(&self, hash: u64, key: &str) -> Option<u32> {
        self.index
            .find(hash, |(k, _)| &**k == key)
            .map(|&(_, slot)| slot)
    }

    /// The slot of a key, if it is configured; `hash` is the hash of its
    /// name. A handle seen configured for the first time remembers its slot.
    #[inline(always)]
    fn slot(&self, key: KeyRef<'_>, hash: u64) -> Option<u32> {
        match key {
            KeyRef::Name(name) => self.find(hash, name),
            KeyRef::Handle(handle) => handle.slot().or_else(|| {
                let slot = self.find(hash, handle.key())?;
                handle.resolve(slot, &self.windows[slot as usize]);
                Some(slot)
            }),
        }
    }
}

/// Keeps each shard's lock on its own cache lines.
#[repr(align(128))]
struct Padded<T>(T);

impl Limiter<MonotonicClock> {
    /// A limiter over `window`, reading the system's monotonic clock.
    pub fn new(window: Span) -> Self {
        Self::with_clock(window, MonotonicClock)
    }
}

impl<C: Clock> Limiter<C> {
    /// A limiter over `window`, reading `clock`.
    pub fn with_clock(window: Span, clock: C) -> Self {
        Limiter {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            geometry: Geometry::new(window),
            clock,
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS)
                .map(|_| {
                    Padded(Mutex::new(Shard {
                        index: HashTable::new(),
                        windows: Vec::new(),
                    }))
                })
                .collect(),
            keys: AtomicUsize::new(0),
        }
    }

    /// The window.
    pub fn window(&self) -> Span {
        self.geometry.window()
    }

    /// The bucket width: capacity is reused at most this late.
    pub fn bucket_width(&self) -> Span {
        self.geometry.bucket_width()
    }

    /// The most buckets (and so the most memory) one key ever holds.
    pub fn max_buckets_per_key(&self) -> usize {
        self.geometry.max_buckets()
    }

    /// The limiter's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// A key's hash and shard. The shard takes middle bits of the hash: the
    /// table inside a shard uses the low bits (bucket) and the top seven
    /// (tag), which must stay varied among one shard's keys.
    #[inline]
    fn locate(&self, key: &str) -> (u64, u32) {
        let hash = self.hasher.hash_one(key);
        (hash, ((hash >> 40) as usize % SHARDS) as u32)
    }

    #[inline]
    fn lock(&self, shard: u32) -> MutexGuard<'_, Shard> {
        self.shards[shard as usize].0.lock()
    }

    /// A key's hash and shard; a handle's were found once.
    ///
    /// # Panics
    ///
    /// If `key` is a handle from another limiter.
    #[inline(always)]
    fn place(&self, key: KeyRef<'_>) -> (u64, u32) {
        match key {
            KeyRef::Name(name) => self.locate(name),
            KeyRef::Handle(handle) => {
                assert!(self.owns(handle), "{}", Error::ForeignHandle);
                (handle.hash, handle.shard)
            }
        }
    }

    /// Set a key's limits. A key seen before keeps its history: what it has
    /// admitted in the window still counts against the new limits.
    pub fn configure(&self, key: &str, quota: Quota) -> Result<(), Error> {
        let (hash, shard) = self.locate(key);
        let mut shard = self.lock(shard);
        if let Some(slot) = shard.find(hash, key) {
            shard.windows[slot as usize].set_quota(quota);
            return Ok(());
        }
        let slot = u32::try_from(shard.windows.len())
            .ok()
            .filter(|&slot| slot != UNRESOLVED)
            .ok_or(Error::TooManyKeys)?;
        shard.windows.push(Box::new(Window::new(quota)));
        let hasher = &self.hasher;
        shard
            .index
            .insert_unique(hash, (key.into(), slot), |(k, _)| hasher.hash_one(&**k));
        self.keys.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A handle of `key`, for naming it in [`Limiter::try_acquire`] without
    /// hashing and comparing its name on every request. The key need not be
    /// configured yet: a handle always means what the key's name means.
    ///
    /// ```
    /// use ratelimit::{Limiter, Quota, Span, TICKS_PER_SECOND};
    /// let limiter = Limiter::new(Span::from_ticks(60 * TICKS_PER_SECOND).unwrap());
    /// let caller = limiter.handle("key:3f2a"); // not configured: unlimited
    /// limiter.try_acquire(&[&caller], 1_000).unwrap();
    /// limiter.configure("key:3f2a", Quota::new(None, Some(1_500)).unwrap()).unwrap();
    /// assert!(limiter.try_acquire(&[&caller], 1_000).is_ok()); // limited from now on
    /// assert!(limiter.try_acquire(&[&caller], 1_000).is_err());
    /// ```
    pub fn handle(&self, key: &str) -> Handle {
        let (hash, shard) = self.locate(key);
        let shard_guard = self.lock(shard);
        let slot = shard_guard.find(hash, key);
        let handle = Handle::new(self.id, hash, shard, key);
        if let Some(slot) = slot {
            handle.resolve(slot, &shard_guard.windows[slot as usize]);
        }
        handle
    }

    /// Whether `handle` was issued by this limiter.
    #[inline]
    pub fn owns(&self, handle: &Handle) -> bool {
        handle.limiter == self.id
    }

    /// Run `f` on a configured key's window, moved to `now` if given.
    fn with_window<R>(
        &self,
        key: &str,
        now: Option<Time>,
        f: impl FnOnce(&mut Window) -> R,
    ) -> Option<R> {
        let (hash, shard) = self.locate(key);
        let mut shard = self.lock(shard);
        let slot = shard.find(hash, key)?;
        let window = &mut shard.windows[slot as usize];
        if let Some(now) = now {
            window.advance(&self.geometry, now);
        }
        Some(f(window))
    }

    /// A key's limits; `None` if it was never configured.
    pub fn quota(&self, key: &str) -> Option<Quota> {
        self.with_window(key, None, |w| w.quota())
    }

    /// How many keys are configured.
    pub fn len(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`Limiter::try_acquire_at`] the clock's time.
    pub fn try_acquire<K: Key>(&self, keys: &[K], tokens: u64) -> Result<Ticket, Denied> {
        self.try_acquire_now(keys, tokens).0
    }

    /// [`Limiter::try_acquire`], and the time it ran at. The windows of the
    /// handles among `keys` are fetched into the cache while the clock is
    /// read.
    #[inline]
    pub(crate) fn try_acquire_now<K: Key>(
        &self,
        keys: &[K],
        tokens: u64,
    ) -> (Result<Ticket, Denied>, Time) {
        for key in keys {
            if let KeyRef::Handle(handle) = key.key_ref() {
                handle.prefetch();
            }
        }
        let now = self.clock.now();
        (self.try_acquire_at(keys, tokens, now), now)
    }

    /// Reserve one request and `tokens` tokens on every limited key in `keys`
    /// at `now`, or, if any of them cannot take it, on none.
    ///
    /// Keys are names, [`Handle`]s, or both ([`KeyRef`]). Keys never
    /// configured are unlimited and hold nothing; a key named twice counts
    /// once. On refusal, [`Denied`] names the key with the longest wait and
    /// when the same request would fit on all of them.
    ///
    /// # Panics
    ///
    /// If a handle was issued by another limiter (see [`Limiter::owns`]).
    pub fn try_acquire_at<K: Key>(
        &self,
        keys: &[K],
        tokens: u64,
        now: Time,
    ) -> Result<Ticket, Denied> {
        if let [key] = keys {
            return self.acquire_one(key.key_ref(), tokens, now);
        }
        // (shard, hash, position in `keys`), in lock order.
        let mut order: SmallVec<[(u32, u64, usize); 4]> = SmallVec::new();
        for (i, key) in keys.iter().enumerate() {
            let (hash, shard) = self.place(key.key_ref());
            order.push((shard, hash, i));
        }
        match order.len() {
            2 if order[1].0 < order[0].0 => order.swap(0, 1),
            2 => {}
            _ => order.sort_unstable_by_key(|&(shard, _, i)| (shard, i)),
        }
        let mut shards: SmallVec<[(u32, MutexGuard<'_, Shard>); 4]> = SmallVec::new();
        for &(shard, _, _) in &order {
            if shards.last().is_none_or(|&(s, _)| s != shard) {
                shards.push((shard, self.lock(shard)));
            }
        }
        // (index in `shards`, slot, position): each limited key once, the
        // first time it is named.
        let mut named: SmallVec<[(usize, u32, usize); 4]> = SmallVec::new();
        let mut g = 0;
        for &(shard, hash, i) in &order {
            while shards[g].0 != shard {
                g += 1;
            }
            if let Some(slot) = shards[g].1.slot(keys[i].key_ref(), hash) {
                if !named.iter().any(|&(h, s, _)| h == g && s == slot) {
                    named.push((g, slot, i));
                }
            }
        }

        let mut refusal: Option<Denied> = None;
        for &(g, slot, key) in &named {
            let window = &mut shards[g].1.windows[slot as usize];
            window.advance(&self.geometry, now);
            let denied = match window.fit(&self.geometry, tokens) {
                Fit::Now => continue,
                Fit::At(at) => Denied::NotUntil { key, at },
                Fit::Never => Denied::Never { key },
            };
            if refusal.is_none_or(|r| denied.outlasts(&r)) {
                refusal = Some(denied);
            }
        }
        if let Some(denied) = refusal {
            return Err(denied);
        }
        let holds = named
            .iter()
            .map(|&(g, slot, _)| {
                let (shard, guard) = &mut shards[g];
                Hold {
                    shard: *shard,
                    slot,
                    bucket: guard.windows[slot as usize].record(&self.geometry, tokens),
                }
            })
            .collect();
        Ok(Ticket::new(self.id, tokens, holds))
    }

    /// [`Limiter::try_acquire_at`] on one key: one lock, nothing to order.
    #[inline]
    fn acquire_one(&self, key: KeyRef<'_>, tokens: u64, now: Time) -> Result<Ticket, Denied> {
        let (hash, shard) = self.place(key);
        let mut guard = self.lock(shard);
        let Some(slot) = guard.slot(key, hash) else {
            drop(guard);
            return Ok(Ticket::new(self.id, tokens, SmallVec::new()));
        };
        let window = &mut guard.windows[slot as usize];
        window.advance(&self.geometry, now);
        match window.fit(&self.geometry, tokens) {
            Fit::Now => {}
            Fit::At(at) => return Err(Denied::NotUntil { key: 0, at }),
            Fit::Never => return Err(Denied::Never { key: 0 }),
        }
        let bucket = window.record(&self.geometry, tokens);
        drop(guard);
        let mut holds = SmallVec::new();
        holds.push(Hold {
            shard,
            slot,
            bucket,
        });
        Ok(Ticket::new(self.id, tokens, holds))
    }

    /// Correct a reservation to the tokens really used (more or fewer), on
    /// every key that holds it. A correction to a reservation that has
    /// already left the window is moot.
    pub fn commit(&self, ticket: &Ticket, actual_tokens: u64) -> Result<(), Error> {
        self.settle(ticket, None, |w, bucket, reserved| {
            w.adjust(bucket, reserved, actual_tokens)
        })
    }

    /// [`Limiter::commit`], first moving each key's time to `now`.
    pub fn commit_at(&self, ticket: &Ticket, actual_tokens: u64, now: Time) -> Result<(), Error> {
        self.settle(ticket, Some(now), |w, bucket, reserved| {
            w.adjust(bucket, reserved, actual_tokens)
        })
    }

    /// Refund a reservation entirely, request and tokens, on every key that
    /// holds it (the call never reached the provider).
    pub fn release(&self, ticket: &Ticket) -> Result<(), Error> {
        self.settle(ticket, None, Window::refund)
    }

    /// [`Limiter::release`], first moving each key's time to `now`.
    pub fn release_at(&self, ticket: &Ticket, now: Time) -> Result<(), Error> {
        self.settle(ticket, Some(now), Window::refund)
    }

    fn settle(
        &self,
        ticket: &Ticket,
        now: Option<Time>,
        apply: impl Fn(&mut Window, i64, u64),
    ) -> Result<(), Error> {
        if ticket.limiter != self.id {
            return Err(Error::ForeignTicket);
        }
        let Some(first) = ticket.holds.first() else {
            return if ticket.settle() {
                Ok(())
            } else {
                Err(Error::AlreadySettled)
            };
        };
        // Holds are in shard order; every settlement of this ticket takes
        // the first hold's shard lock first, and marks the ticket under it.
        let mut current = first.shard;
        let mut shard = self.lock(current);
        if !ticket.settle_locked() {
            return Err(Error::AlreadySettled);
        }
        for hold in &ticket.holds {
            if hold.shard != current {
                drop(shard);
                current = hold.shard;
                shard = self.lock(current);
            }
            let window = &mut shard.windows[hold.slot as usize];
            // Without a time, a correction to a bucket that has expired but
            // is not yet dropped is harmless: nothing reads it before the
            // next advance drops it.
            if let Some(now) = now {
                window.advance(&self.geometry, now);
            }
            apply(window, hold.bucket, ticket.tokens);
        }
        Ok(())
    }

    /// [`Limiter::headroom_at`] the clock's time.
    pub fn headroom(&self, key: &str) -> Headroom {
        self.headroom_at(key, self.clock.now())
    }

    /// Requests and tokens a key has left at `now`; unconfigured keys are
    /// unlimited.
    pub fn headroom_at(&self, key: &str, now: Time) -> Headroom {
        self.with_window(key, Some(now), |w| {
            let (requests, tokens) = w.headroom();
            Headroom { requests, tokens }
        })
        .unwrap_or(Headroom::UNLIMITED)
    }

    /// [`Limiter::usage_at`] the clock's time.
    pub fn usage(&self, key: &str) -> Option<(u64, u64)> {
        self.usage_at(key, self.clock.now())
    }

    /// Requests and tokens a key counts at `now` (reservations at their
    /// reserved size until settled); `None` if it was never configured.
    pub fn usage_at(&self, key: &str, now: Time) -> Option<(u64, u64)> {
        self.with_window(key, Some(now), |w| w.usage())
    }

    /// Heap bytes a key's window holds now (at most
    /// [`Limiter::max_buckets_per_key`] buckets of 24 bytes); `None` if the
    /// key was never configured.
    pub fn heap_bytes(&self, key: &str) -> Option<usize> {
        self.with_window(key, None, |w| w.heap_bytes())
    }

    /// Buckets a key's window holds now; `None` if never configured.
    pub fn buckets_held(&self, key: &str) -> Option<usize> {
        self.with_window(key, None, |w| w.buckets_held())
    }
}

impl<C> std::fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("window", &self.geometry.window())
            .field("keys", &self.keys.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
