//! Keys resolved once: a [`Handle`] spares the hot path hashing and
//! comparing the key's name on every request.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::window::Window;

/// The slot of a handle whose key has not been seen configured yet.
pub(crate) const UNRESOLVED: u32 = u32::MAX;

/// A key of one [`Limiter`](crate::Limiter), resolved once by
/// [`Limiter::handle`](crate::Limiter::handle) and then named by it in
/// [`Limiter::try_acquire`](crate::Limiter::try_acquire) without hashing or
/// comparing the key's name again.
///
/// A handle means exactly what its key's name means, whenever it is used: a
/// key configured before or after the handle was taken is limited, one never
/// configured is unlimited, and reconfiguring a key keeps its handles valid
/// (keys are never removed, so a key's place never moves). A handle and the
/// name of the same key, or two handles of one key, count once in one
/// request. Using a handle with another limiter is a mistake: see
/// [`Limiter::try_acquire_at`](crate::Limiter::try_acquire_at).
#[derive(Debug)]
pub struct Handle {
    pub(crate) limiter: u64,
    pub(crate) hash: u64,
    pub(crate) shard: u32,
    /// The key's slot in its shard once it has been seen configured;
    /// [`UNRESOLVED`] until then. Set once, under the shard's lock, and
    /// never changed: slots are never reused.
    slot: AtomicU32,
    /// Where the key's window lives (0 until resolved), only ever used as a
    /// hint to the CPU, never read through.
    window: AtomicUsize,
    key: Box<str>,
}

impl Handle {
    pub(crate) fn new(limiter: u64, hash: u64, shard: u32, key: &str) -> Self {
        Handle {
            limiter,
            hash,
            shard,
            slot: AtomicU32::new(UNRESOLVED),
            window: AtomicUsize::new(0),
            key: key.into(),
        }
    }

    /// The key's name.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key's slot, if it was configured when last looked up. Acquire:
    /// pairs with the release in [`Handle::resolve`], so the slot's window
    /// is visible to whoever then takes the shard's lock.
    #[inline]
    pub(crate) fn slot(&self) -> Option<u32> {
        let slot = self.slot.load(Ordering::Acquire);
        (slot != UNRESOLVED).then_some(slot)
    }

    /// Remember the key's slot and window, found under its shard's lock.
    #[inline]
    pub(crate) fn resolve(&self, slot: u32, window: &Window) {
        self.window
            .store(window as *const Window as usize, Ordering::Relaxed);
        self.slot.store(slot, Ordering::Release);
    }

    /// Ask the CPU to start fetching the key's window (both cache lines of
    /// it), so that the miss overlaps other work. Only a hint: an address is
    /// never read through here.
    #[inline]
    pub(crate) fn prefetch(&self) {
        let at = self.window.load(Ordering::Relaxed);
        if at != 0 {
            prefetch(at);
            prefetch(at + std::mem::size_of::<Window>() - 1);
        }
    }
}

/// One key of a request, as [`Limiter::try_acquire`](crate::Limiter::try_acquire)
/// reads it: by name, or by [`Handle`].
#[derive(Clone, Copy, Debug)]
pub enum KeyRef<'a> {
    /// The key's name, hashed and looked up on every request.
    Name(&'a str),
    /// A handle of the key, looked up once.
    Handle(&'a Handle),
}

/// What [`Limiter::try_acquire`](crate::Limiter::try_acquire) takes as keys:
/// names (`&str`, `String`, anything `AsRef<str>`), handles, or a mix of
/// both as [`KeyRef`]s.
///
/// ```
/// use ratelimit::{KeyRef, Limiter, Quota, Span, TICKS_PER_SECOND};
/// let limiter = Limiter::new(Span::from_ticks(60 * TICKS_PER_SECOND).unwrap());
/// limiter.configure("deployment:a", Quota::new(Some(2), None).unwrap()).unwrap();
/// let a = limiter.handle("deployment:a");
/// limiter.try_acquire(&[&a], 10).unwrap();
/// limiter.try_acquire(&[KeyRef::Handle(&a), KeyRef::Name("key:free")], 10).unwrap();
/// assert!(limiter.try_acquire(&["deployment:a"], 10).is_err());
/// ```
pub trait Key {
    /// The key as a name or a handle.
    fn key_ref(&self) -> KeyRef<'_>;
}

impl<T: AsRef<str> + ?Sized> Key for T {
    #[inline]
    fn key_ref(&self) -> KeyRef<'_> {
        KeyRef::Name(self.as_ref())
    }
}

impl Key for Handle {
    #[inline]
    fn key_ref(&self) -> KeyRef<'_> {
        KeyRef::Handle(self)
    }
}

impl Key for &Handle {
    #[inline]
    fn key_ref(&self) -> KeyRef<'_> {
        KeyRef::Handle(self)
    }
}

impl Key for KeyRef<'_> {
    #[inline]
    fn key_ref(&self) -> KeyRef<'_> {
        *self
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch(at: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: a prefetch is a hint; it never faults and reads nothing
    // observable, whatever the address.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(at as *const i8) }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn prefetch(_: usize) {}
