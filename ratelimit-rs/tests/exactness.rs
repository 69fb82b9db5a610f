//! Exactness: the limiter against an exact sliding log, under random
//! acquire / commit / release / reconfigure sequences at non-decreasing
//! times, with bursts aimed at window and bucket edges.
//!
//! With `W` the window and `q` the bucket width, at every step:
//! - never over: an admission fits the exact log over `(t - W, t]`;
//! - nearly exact: a request that fits the exact log over `(t - W - q, t]`
//!   is admitted, and one that fits over `(t - W, t]` is admitted within `q`
//!   (its `retry_at` is at most `q` away);
//! - sandwich: every key's count lies between the log's over `W` and `W + q`;
//! - `retry_at` is exact: the same request is refused one tick before it and
//!   admitted at it;
//! - a ticket settles once.
//!
//! Requests name their keys by str, by handle (taken before any key is
//! configured, so resolved on first use), or a mix of both, in turn: a
//! handle must mean exactly what its key's name means.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use ratelimit::{
    Denied, Error, FakeClock, Handle, KeyRef, Limiter, Quota, Span, Ticket, Time, TICKS_PER_SECOND,
};

const NAMES: [&str; 4] = ["k0", "k1", "k2", "unconfigured"];
const LIMITED: usize = 3;

type Limits = (Option<u64>, Option<u64>);

#[derive(Clone, Debug)]
enum Step {
    /// Move time forward by this many ticks.
    By(i64),
    /// Jump to where the oldest counted entry leaves the window (or its
    /// bucket does, if `bucket`), plus `offset` ticks.
    Edge { bucket: bool, offset: i64 },
}

#[derive(Clone, Debug)]
enum Op {
    Acquire {
        step: Step,
        keys: Vec<usize>,
        tokens: u64,
        probe: bool,
    },
    Commit {
        step: Step,
        pick: usize,
        actual: u64,
        timed: bool,
    },
    Release {
        step: Step,
        pick: usize,
        timed: bool,
    },
    SettleAgain {
        pick: usize,
    },
    Configure {
        step: Step,
        key: usize,
        limits: Limits,
    },
}

#[derive(Clone, Debug)]
struct Scenario {
    window: i64,
    start: i64,
    limits: [Limits; LIMITED],
    ops: Vec<Op>,
}

fn width_of(window: i64) -> i64 {
    (window + 1023) / 1024
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        prop::option::weighted(0.7, 1..=5u64),
        prop::option::weighted(0.8, 1..=300u64),
    )
}

fn step(window: i64) -> impl Strategy<Value = Step> {
    let q = width_of(window);
    prop_oneof![
        3 => Just(Step::By(0)),
        2 => Just(Step::By(1)),
        4 => (0..=2 * q).prop_map(Step::By),
        1 => (q - 1..=q + 1).prop_map(Step::By),
        4 => (0..=window / 6).prop_map(Step::By),
        2 => (window - 2 * q..=window + 2 * q).prop_map(Step::By),
        4 => (any::<bool>(), -2..=2i64)
            .prop_map(|(bucket, offset)| Step::Edge { bucket, offset }),
    ]
}

fn op(window: i64) -> impl Strategy<Value = Op> {
    let tokens = prop_oneof![8 => 0..=120u64, 1 => 121..=400u64];
    prop_oneof![
        6 => (
            step(window),
            prop::collection::vec(0..NAMES.len(), 1..=4),
            tokens,
            prop::bool::weighted(0.3),
        )
            .prop_map(|(step, keys, tokens, probe)| Op::Acquire { step, keys, tokens, probe }),
        3 => (step(window), any::<usize>(), 0..=400u64, any::<bool>())
            .prop_map(|(step, pick, actual, timed)| Op::Commit { step, pick, actual, timed }),
        2 => (step(window), any::<usize>(), any::<bool>())
            .prop_map(|(step, pick, timed)| Op::Release { step, pick, timed }),
        1 => any::<usize>().prop_map(|pick| Op::SettleAgain { pick }),
        1 => (step(window), 0..LIMITED, limits())
            .prop_map(|(step, key, limits)| Op::Configure { step, key, limits }),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    prop_oneof![
        1024i64..=50_000,
        (1..=4_000i64).prop_map(|x| x * 1024 + 7),
        Just(60 * TICKS_PER_SECOND),
    ]
    .prop_flat_map(|window| {
        (
            Just(window),
            -(1i64 << 40)..(1i64 << 40),
            [limits(), limits(), limits()],
            prop::collection::vec(op(window), 1..80),
        )
            .prop_map(|(window, start, limits, ops)| Scenario {
                window,
                start,
                limits,
                ops,
            })
    })
}

/// One admitted request, as the exact log sees it.
#[derive(Debug)]
struct Entry {
    at: i64,
    keys: Vec<usize>,
    tokens: u64,
    released: bool,
}

/// The exact sliding log.
struct Log {
    entries: Vec<Entry>,
    limits: [Limits; LIMITED],
}

impl Log {
    /// Requests and tokens on `key` admitted in `(now - window, now]`.
    fn usage(&self, key: usize, now: i64, window: i64) -> (u64, u64) {
        self.entries
            .iter()
            .filter(|e| !e.released && e.keys.contains(&key) && e.at > now - window && e.at <= now)
            .fold((0, 0), |(r, t), e| (r + 1, t + e.tokens))
    }

    fn fits_key(&self, key: usize, tokens: u64, now: i64, window: i64) -> bool {
        let (r, t) = self.usage(key, now, window);
        let (rpm, tpm) = self.limits[key];
        rpm.is_none_or(|l| r < l) && tpm.is_none_or(|l| t + tokens <= l)
    }
}

struct Run {
    limiter: Limiter<FakeClock>,
    /// A handle of each of `NAMES`, taken before any was configured.
    handles: Vec<Handle>,
    /// Acquisitions so far: by name, by handle and mixed, in turn.
    acquisitions: usize,
    log: Log,
    window: i64,
    width: i64,
    now: i64,
    open: Vec<(Ticket, usize)>,
    settled: Vec<Ticket>,
}

impl Run {
    fn step(&mut self, step: &Step) {
        let target = match *step {
            Step::By(dt) => self.now + dt,
            Step::Edge { bucket, offset } => {
                let oldest = self
                    .log
                    .entries
                    .iter()
                    .filter(|e| !e.released && e.at > self.now - self.window - self.width)
                    .map(|e| e.at)
                    .min();
                match oldest {
                    None => self.now,
                    Some(at) if bucket => {
                        (at.div_euclid(self.width) + 1) * self.width + self.window + offset
                    }
                    Some(at) => at + self.window + offset,
                }
            }
        };
        self.now = self.now.max(target);
    }

    /// Acquire at `self.now` and check it against the log.
    fn acquire(&mut self, keys: &[usize], tokens: u64) -> Result<(), Denied> {
        let mode = self.acquisitions % 3;
        self.acquisitions += 1;
        let names: Vec<KeyRef<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, &k)| match mode {
                1 => KeyRef::Handle(&self.handles[k]),
                2 if i % 2 == 0 => KeyRef::Handle(&self.handles[k]),
                _ => KeyRef::Name(NAMES[k]),
            })
            .collect();
        let mut limited: Vec<usize> = keys.iter().copied().filter(|&k| k < LIMITED).collect();
        limited.sort_unstable();
        limited.dedup();
        let (now, w, q) = (self.now, self.window, self.width);
        let exact = limited
            .iter()
            .all(|&k| self.log.fits_key(k, tokens, now, w));
        let extended = limited
            .iter()
            .all(|&k| self.log.fits_key(k, tokens, now, w + q));
        match self
            .limiter
            .try_acquire_at(&names, tokens, Time::from_ticks(now))
        {
            Ok(ticket) => {
                assert!(exact, "over-admitted at {now}: {keys:?} {tokens}");
                assert_eq!(ticket.keys_held(), limited.len());
                self.log.entries.push(Entry {
                    at: now,
                    keys: limited,
                    tokens,
                    released: false,
                });
                self.open.push((ticket, self.log.entries.len() - 1));
                Ok(())
            }
            Err(denied) => {
                assert!(!extended, "under-admitted at {now}: {keys:?} {tokens}");
                let refusing = keys[denied.key()];
                assert!(refusing < LIMITED);
                assert!(!self.log.fits_key(refusing, tokens, now, w + q));
                let never = limited
                    .iter()
                    .any(|&k| self.log.limits[k].1.is_some_and(|l| tokens > l));
                match denied {
                    Denied::Never { .. } => {
                        assert!(never);
                        let first = keys.iter().position(|&k| {
                            k < LIMITED && self.log.limits[k].1.is_some_and(|l| tokens > l)
                        });
                        assert_eq!(Some(denied.key()), first);
                    }
                    Denied::NotUntil { at, .. } => {
                        assert!(!never);
                        assert!(at.ticks() > now);
                        if exact {
                            assert!(
                                at.ticks() - now <= q,
                                "fits the log, yet waits {}",
                                at.ticks() - now
                            );
                        }
                    }
                }
                Err(denied)
            }
        }
    }

    fn take(&mut self, pick: usize) -> Option<(Ticket, usize)> {
        if self.open.is_empty() {
            None
        } else {
            let i = pick % self.open.len();
            Some(self.open.swap_remove(i))
        }
    }

    fn check_sandwich(&self) {
        for (k, name) in NAMES.iter().enumerate().take(LIMITED) {
            let (r, t) = self
                .limiter
                .usage_at(name, Time::from_ticks(self.now))
                .unwrap();
            let (lr, lt) = self.log.usage(k, self.now, self.window);
            let (ur, ut) = self.log.usage(k, self.now, self.window + self.width);
            assert!(lr <= r && r <= ur, "requests {lr} <= {r} <= {ur} on {k}");
            assert!(lt <= t && t <= ut, "tokens {lt} <= {t} <= {ut} on {k}");
        }
        assert!(self
            .limiter
            .usage_at(NAMES[3], Time::from_ticks(self.now))
            .is_none());
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Acquire {
                step,
                keys,
                tokens,
                probe,
            } => {
                self.step(step);
                if let Err(Denied::NotUntil { at, .. }) = self.acquire(keys, *tokens) {
                    if *probe {
                        self.now = at.ticks() - 1;
                        let again = self.acquire(keys, *tokens).expect_err("one tick early");
                        assert_eq!(again.retry_at(), Some(at));
                        self.now = at.ticks();
                        self.acquire(keys, *tokens).expect("admitted at retry_at");
                    }
                }
            }
            Op::Commit {
                step,
                pick,
                actual,
                timed,
            } => {
                self.step(step);
                if let Some((ticket, entry)) = self.take(*pick) {
                    if *timed {
                        self.limiter
                            .commit_at(&ticket, *actual, Time::from_ticks(self.now))
                            .unwrap();
                    } else {
                        self.limiter.commit(&ticket, *actual).unwrap();
                    }
                    self.log.entries[entry].tokens = *actual;
                    self.settled.push(ticket);
                }
            }
            Op::Release { step, pick, timed } => {
                self.step(step);
                if let Some((ticket, entry)) = self.take(*pick) {
                    if *timed {
                        self.limiter
                            .release_at(&ticket, Time::from_ticks(self.now))
                            .unwrap();
                    } else {
                        self.limiter.release(&ticket).unwrap();
                    }
                    self.log.entries[entry].released = true;
                    self.settled.push(ticket);
                }
            }
            Op::SettleAgain { pick } => {
                if !self.settled.is_empty() {
                    let ticket = &self.settled[pick % self.settled.len()];
                    assert_eq!(self.limiter.commit(ticket, 1), Err(Error::AlreadySettled));
                    assert_eq!(self.limiter.release(ticket), Err(Error::AlreadySettled));
                }
            }
            Op::Configure { step, key, limits } => {
                self.step(step);
                let quota = Quota::new(limits.0, limits.1).unwrap();
                self.limiter.configure(NAMES[*key], quota).unwrap();
                self.log.limits[*key] = *limits;
            }
        }
        self.check_sandwich();
    }
}

fn run(s: &Scenario) {
    let limiter = Limiter::with_clock(Span::from_ticks(s.window).unwrap(), FakeClock::default());
    assert_eq!(limiter.bucket_width().ticks(), width_of(s.window));
    let handles = NAMES.iter().map(|name| limiter.handle(name)).collect();
    for (k, l) in s.limits.iter().enumerate() {
        limiter
            .configure(NAMES[k], Quota::new(l.0, l.1).unwrap())
            .unwrap();
    }
    let mut run = Run {
        limiter,
        handles,
        acquisitions: 0,
        log: Log {
            entries: Vec::new(),
            limits: s.limits,
        },
        window: s.window,
        width: width_of(s.window),
        now: s.start,
        open: Vec::new(),
        settled: Vec::new(),
    };
    for op in &s.ops {
        run.apply(op);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/exactness.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_limiter_matches_the_exact_sliding_log(s in scenario()) {
        run(&s);
    }
}

/// A saturating workload: the limiter admits at least 99.8 % of the tokens
/// the exact sliding log admits over the same offered load.
#[test]
fn utilisation_against_the_exact_log() {
    let window = 60 * TICKS_PER_SECOND;
    let limiter = Limiter::with_clock(Span::from_ticks(window).unwrap(), FakeClock::default());
    let tpm = 100_000;
    limiter
        .configure("a", Quota::new(None, Some(tpm)).unwrap())
        .unwrap();
    let mut log: std::collections::VecDeque<(i64, u64)> = Default::default();
    let mut used = 0u64;
    let (mut admitted, mut exact) = (0u64, 0u64);
    // A deterministic stream: a request every ~7 ms of 100..2000 tokens.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut now = 0i64;
    for _ in 0..200_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        now += (seed % 15_000_000) as i64;
        let tokens = 100 + seed % 1_900;
        if limiter
            .try_acquire_at(&["a"], tokens, Time::from_ticks(now))
            .is_ok()
        {
            admitted += tokens;
        }
        while log.front().is_some_and(|&(t, _)| t <= now - window) {
            used -= log.pop_front().unwrap().1;
        }
        if used + tokens <= tpm {
            log.push_back((now, tokens));
            used += tokens;
            exact += tokens;
        }
    }
    let ratio = admitted as f64 / exact as f64;
    println!("utilisation: {admitted} / {exact} = {ratio:.5}");
    assert!(ratio >= 0.998, "utilisation {ratio}");
    assert!(ratio <= 1.01, "utilisation {ratio}");
}
