//! The PyO3 module `switchboard._ratelimit`: conversions only, no logic.
//!
//! Python's `float` seconds become [`Time`] ticks exactly; `now=None` reads
//! [`MonotonicClock`], which agrees with `time.monotonic()`. Every core
//! [`Error`] becomes `ValueError`; a wrong type is `TypeError`.
//!
//! `try_acquire` + `commit` is the hot path (~125 ns a pair from Python by
//! handle, about half of it the interpreter's calls and the clock): a lone
//! `Handle` is admitted without collecting anything, and `Ticket` is a plain
//! C-API type ([`ticket`]), cheaper to create than a `#[pyclass]`.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyList, PyString, PyTuple};
use smallvec::SmallVec;

use crate::{
    Clock, Denied, Error, Handle, Key, KeyRef, Limiter, MonotonicClock, Quota, Span, Time,
    TICKS_PER_SECOND,
};

mod ticket;

/// The native core's version.
#[pyfunction]
fn version() -> &'static str {
    crate::VERSION
}

fn value_error(e: Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A non-negative count from a Python int: at least `min`, at most 2^63 - 1.
#[inline]
fn count(value: &Bound<'_, PyAny>, what: &str, min: i64) -> PyResult<u64> {
    match value.extract::<i64>() {
        Ok(v) if v >= min => Ok(v as u64),
        Ok(v) => Err(PyValueError::new_err(format!(
            "{what} must be at least {min}, got {v}"
        ))),
        Err(_) if value.is_instance_of::<PyInt>() => Err(PyValueError::new_err(format!(
            "{what} must be below 2**63, got {value}"
        ))),
        Err(e) => Err(e),
    }
}

fn limit(value: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<u64>> {
    value.map(|v| count(v, what, 1)).transpose()
}

fn seconds(ticks: i64) -> f64 {
    ticks as f64 / TICKS_PER_SECOND as f64
}

/// A sliding-window limiter of requests and tokens per key.
#[pyclass(frozen, module = "switchboard._ratelimit", name = "RateLimiter")]
struct PyRateLimiter {
    inner: Limiter<MonotonicClock>,
}

impl PyRateLimiter {
    #[inline]
    fn time(&self, now: Option<f64>) -> PyResult<Time> {
        match now {
            None => Ok(self.inner.clock().now()),
            Some(s) => Time::from_secs_f64(s).map_err(value_error),
        }
    }

    /// A handle of this limiter, or `ValueError`.
    #[inline]
    fn own<'a>(&self, handle: &'a PyHandle) -> PyResult<&'a Handle> {
        if self.inner.owns(&handle.inner) {
            Ok(&handle.inner)
        } else {
            Err(value_error(Error::ForeignHandle))
        }
    }

    /// Admit on `keys` at `now` (`None`: the clock, read after asking the
    /// CPU for the handles' windows); a `Ticket`, or a `Denied` naming the
    /// refusing key by `name(position)`.
    #[inline]
    fn admit<'py, K: Key>(
        &self,
        py: Python<'py>,
        keys: &[K],
        tokens: u64,
        now: Option<f64>,
        name: impl FnOnce(usize) -> PyResult<Py<PyString>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (result, at) = match now {
            None => self.inner.try_acquire_now(keys, tokens),
            Some(s) => {
                let at = Time::from_secs_f64(s).map_err(value_error)?;
                (self.inner.try_acquire_at(keys, tokens, at), at)
            }
        };
        match result {
            Ok(ticket) => ticket::new(py, ticket),
            Err(denied) => {
                let key = name(denied.key())?;
                Ok(Bound::new(py, PyDenied::new(key, &denied, at, now))?.into_any())
            }
        }
    }

    /// Admit on the keys in `items`: each a str or a handle of this limiter.
    fn acquire<'py>(
        &self,
        py: Python<'py>,
        items: &[Bound<'py, PyAny>],
        tokens: u64,
        now: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut keys: SmallVec<[KeyRef<'_>; 4]> = SmallVec::with_capacity(items.len());
        for item in items {
            if let Ok(handle) = item.cast_exact::<PyHandle>() {
                keys.push(KeyRef::Handle(self.own(handle.get())?));
            } else if let Ok(name) = item.cast::<PyString>() {
                keys.push(KeyRef::Name(name.to_str()?));
            } else {
                return Err(PyTypeError::new_err(format!(
                    "keys must be str or Handle, got {}",
                    item.get_type()
                        .name()
                        .map_or_else(|_| "?".into(), |n| n.to_string())
                )));
            }
        }
        self.admit(py, &keys, tokens, now, |i| {
            let item = &items[i];
            Ok(match item.cast_exact::<PyHandle>() {
                Ok(handle) => handle.get().key.clone_ref(py),
                Err(_) => item.cast::<PyString>()?.clone().unbind(),
            })
        })
    }
}

#[pymethods]
impl PyRateLimiter {
    #[new]
    #[pyo3(signature = (window_seconds = 60.0))]
    fn new(window_seconds: f64) -> PyResult<Self> {
        let window = Span::from_secs_f64_ceil(window_seconds).map_err(value_error)?;
        Ok(PyRateLimiter {
            inner: Limiter::new(window),
        })
    }

    /// The window, in seconds.
    #[getter]
    fn window_seconds(&self) -> f64 {
        self.inner.window().as_secs_f64()
    }

    /// The bucket width, in seconds: capacity is reused at most this late.
    #[getter]
    fn bucket_seconds(&self) -> f64 {
        self.inner.bucket_width().as_secs_f64()
    }

    /// The limiter's clock now, in seconds (agrees with `time.monotonic()`).
    fn now(&self) -> f64 {
        seconds(self.inner.clock().now().ticks())
    }

    /// Set a key's limits per window (`None`: unlimited); history is kept.
    #[pyo3(signature = (key, rpm, tpm))]
    fn configure(
        &self,
        key: &str,
        rpm: Option<&Bound<'_, PyAny>>,
        tpm: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let quota = Quota::new(limit(rpm, "rpm")?, limit(tpm, "tpm")?).map_err(value_error)?;
        self.inner.configure(key, quota).map_err(value_error)
    }

    /// A handle of `key`: name the key by it in `try_acquire`, without
    /// hashing or comparing its name on every request. It means what the
    /// name means, whenever it is used (configured before or after, or never).
    fn handle(&self, key: &Bound<'_, PyString>) -> PyResult<PyHandle> {
        Ok(PyHandle {
            inner: self.inner.handle(key.to_str()?),
            key: key.clone().unbind(),
        })
    }

    /// Reserve one request and `tokens` on every key, or on none.
    #[pyo3(signature = (keys, tokens, now = None))]
    fn try_acquire<'py>(
        &self,
        keys: &Bound<'py, PyAny>,
        tokens: &Bound<'py, PyAny>,
        now: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = keys.py();
        let tokens = count(tokens, "tokens", 0)?;
        if let Ok(handle) = keys.cast_exact::<PyHandle>() {
            // The hot path: one handle, nothing to collect.
            let key = self.own(handle.get())?;
            self.admit(py, &[key], tokens, now, |_| {
                Ok(handle.get().key.clone_ref(py))
            })
        } else if let Ok(tuple) = keys.cast::<PyTuple>() {
            self.acquire(py, tuple.as_slice(), tokens, now)
        } else if let Ok(list) = keys.cast::<PyList>() {
            let items: SmallVec<[Bound<'py, PyAny>; 4]> = list.iter().collect();
            self.acquire(py, &items, tokens, now)
        } else if keys.is_instance_of::<PyString>() {
            Err(PyTypeError::new_err(
                "keys must be a sequence of str, not a str: pass [key]",
            ))
        } else {
            let items = keys
                .try_iter()?
                .collect::<PyResult<SmallVec<[Bound<'py, PyAny>; 4]>>>()?;
            self.acquire(py, &items, tokens, now)
        }
    }

    /// Correct the reservation to the tokens really used.
    #[pyo3(signature = (ticket, actual_tokens, now = None))]
    fn commit(
        &self,
        ticket: &Bound<'_, PyAny>,
        actual_tokens: &Bound<'_, PyAny>,
        now: Option<f64>,
    ) -> PyResult<()> {
        let ticket = ticket::get(ticket)?;
        let actual = count(actual_tokens, "actual_tokens", 0)?;
        match now {
            None => self.inner.commit(ticket, actual),
            Some(_) => self.inner.commit_at(ticket, actual, self.time(now)?),
        }
        .map_err(value_error)
    }

    /// Refund the reservation entirely.
    #[pyo3(signature = (ticket, now = None))]
    fn release(&self, ticket: &Bound<'_, PyAny>, now: Option<f64>) -> PyResult<()> {
        let ticket = ticket::get(ticket)?;
        match now {
            None => self.inner.release(ticket),
            Some(_) => self.inner.release_at(ticket, self.time(now)?),
        }
        .map_err(value_error)
    }

    /// Requests and tokens left on a key now (`None`: unlimited).
    #[pyo3(signature = (key, now = None))]
    fn headroom(&self, key: &str, now: Option<f64>) -> PyResult<(Option<u64>, Option<u64>)> {
        let h = self.inner.headroom_at(key, self.time(now)?);
        Ok((h.requests, h.tokens))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "RateLimiter(window_seconds={:?}, keys={})",
            self.window_seconds(),
            self.inner.len()
        )
    }
}

/// A key of one limiter, resolved once: pass it to `try_acquire` in place
/// of the key's name (alone, or among others in a tuple or list).
#[pyclass(frozen, module = "switchboard._ratelimit", name = "Handle")]
struct PyHandle {
    inner: Handle,
    key: Py<PyString>,
}

#[pymethods]
impl PyHandle {
    /// The key's name.
    #[getter]
    fn key(&self, py: Python<'_>) -> Py<PyString> {
        self.key.clone_ref(py)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Handle({})",
            self.key
                .bind(py)
                .repr()
                .map_or_else(|_| "?".into(), |r| r.to_string())
        )
    }
}

/// A refusal: nothing was reserved. Falsy.
#[pyclass(frozen, module = "switchboard._ratelimit", name = "Denied")]
struct PyDenied {
    /// The key that refused with the longest wait.
    #[pyo3(get)]
    key: Py<PyString>,
    /// Seconds from `now` until the same request fits on every key
    /// (`inf` if it never does).
    #[pyo3(get)]
    retry_after: f64,
    /// The monotonic time at which it fits (`inf` if never).
    #[pyo3(get)]
    retry_at: f64,
    /// The request asks for more tokens than a key's limit: it never fits.
    #[pyo3(get)]
    never: bool,
}

impl PyDenied {
    fn new(key: Py<PyString>, denied: &Denied, at: Time, now: Option<f64>) -> Self {
        let Some(fits) = denied.retry_at() else {
            return PyDenied {
                key,
                retry_after: f64::INFINITY,
                retry_at: f64::INFINITY,
                never: true,
            };
        };
        let retry_at = fits.as_secs_f64_ceil();
        let retry_after = match now {
            None => seconds(fits.ticks() - at.ticks()),
            Some(now) => wait_from(now, retry_at, fits),
        };
        PyDenied {
            key,
            retry_after,
            retry_at,
            never: false,
        }
    }
}

/// The smallest float wait such that `now + wait`, added in floats as the
/// caller will, lands on `fits` or later.
fn wait_from(now: f64, retry_at: f64, fits: Time) -> f64 {
    let lands = |wait: f64| Time::from_secs_f64(now + wait).map_or(true, |t| t >= fits);
    let mut wait = retry_at - now;
    for _ in 0..64 {
        if lands(wait) {
            break;
        }
        wait = ((now + wait).next_up() - now).max(wait.next_up());
    }
    wait
}

#[pymethods]
impl PyDenied {
    fn __bool__(&self) -> bool {
        false
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Denied(key={}, retry_after={:?}, never={})",
            self.key
                .bind(py)
                .repr()
                .map_or_else(|_| "?".into(), |r| r.to_string()),
            self.retry_after,
            if self.never { "True" } else { "False" }
        )
    }
}

#[pymodule(gil_used = false)]
fn _ratelimit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_class::<PyRateLimiter>()?;
    m.add_class::<PyHandle>()?;
    ticket::add_to(m)?;
    m.add_class::<PyDenied>()?;
    Ok(())
}
