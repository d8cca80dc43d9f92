//! Exponential back-off as a pure state machine: no clock, no sockets, and a
//! random source seeded by the caller, so every sequence of delays can be
//! replayed exactly in a test.

use std::fmt;
use std::time::Duration;

/// The longest delay a policy may ask for (a year), so the arithmetic never
/// overflows a [`Duration`].
pub const MAX_DELAY_LIMIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// A back-off policy that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The factor is below 1, not a number or infinite.
    #[error("back-off factor must be a finite number >= 1, got {0}")]
    Factor(f64),
    /// The jitter is outside `0.0..=1.0`.
    #[error("back-off jitter must be between 0 and 1, got {0}")]
    Jitter(f64),
    /// The initial delay is longer than the maximum delay.
    #[error("initial delay {initial:?} is longer than the maximum delay {max:?}")]
    InitialAboveMax {
        /// The initial delay asked for.
        initial: Duration,
        /// The maximum delay asked for.
        max: Duration,
    },
    /// The maximum delay is longer than [`MAX_DELAY_LIMIT`].
    #[error("maximum delay {0:?} is longer than a year")]
    MaxTooLong(Duration),
}

/// How long to wait between connection attempts: the first retry waits
/// `initial_delay`, each further one `factor` times longer, never more than
/// `max_delay`; each delay is spread by `jitter` (a fraction: 0.1 means up to
/// 10 % shorter or longer) and then capped again, so a jittered delay never
/// exceeds `max_delay`.
///
/// Defaults: 1 s initial, factor 2, jitter 0.1, at most 60 s, unlimited retries.
///
/// ```
/// use std::time::Duration;
/// use torsion::reconnect::BackoffPolicy;
///
/// let policy = BackoffPolicy::default()
///     .initial_delay(Duration::from_millis(100))
///     .factor(2.0)
///     .jitter(0.0)
///     .max_delay(Duration::from_secs(1))
///     .max_retries(Some(5));
/// assert!(policy.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    initial: Duration,
    factor: f64,
    jitter: f64,
    max: Duration,
    max_retries: Option<u32>,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(1),
            factor: 2.0,
            jitter: 0.1,
            max: Duration::from_secs(60),
            max_retries: None,
        }
    }
}

impl BackoffPolicy {
    /// The delay before the first retry (before jitter).
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial = delay;
        self
    }

    /// How much longer each delay is than the one before (at least 1).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// The spread of each delay, as a fraction between 0 and 1: a delay `d` becomes
    /// a uniformly random value in `d * (1 - jitter) ..= d * (1 + jitter)`, capped at
    /// the maximum. Jitter keeps many clients that lost the same server from all
    /// coming back in the same instant.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The longest delay, jitter included.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max = delay;
        self
    }

    /// How many retries in a row before giving up (`None`: never give up). The
    /// count starts again after a successful connection.
    pub fn max_retries(mut self, retries: Option<u32>) -> Self {
        self.max_retries = retries;
        self
    }

    /// The configured initial delay.
    pub fn get_initial_delay(&self) -> Duration {
        self.initial
    }

    /// The configured maximum delay.
    pub fn get_max_delay(&self) -> Duration {
        self.max
    }

    /// The configured retry limit.
    pub fn get_max_retries(&self) -> Option<u32> {
        self.max_retries
    }

    /// Checks that the policy can work.
    ///
    /// # Errors
    /// A [`PolicyError`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !self.factor.is_finite() || self.factor < 1.0 {
            return Err(PolicyError::Factor(self.factor));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(PolicyError::Jitter(self.jitter));
        }
        if self.max > MAX_DELAY_LIMIT {
            return Err(PolicyError::MaxTooLong(self.max));
        }
        if self.initial > self.max {
            return Err(PolicyError::InitialAboveMax {
                initial: self.initial,
                max: self.max,
            });
        }
        Ok(())
    }
}

/// The back-off state: which retry comes next and how long to wait for it.
///
/// Feed it the outcome of each attempt: [`next_delay`](Self::next_delay) after a
/// failure (or a lost connection) says how long to wait, or `None` once the
/// retries are used up; [`reset`](Self::reset) after a success starts again from
/// the initial delay.
///
/// ```
/// use std::time::Duration;
/// use torsion::reconnect::{Backoff, BackoffPolicy};
///
/// let policy = BackoffPolicy::default()
///     .initial_delay(Duration::from_secs(1))
///     .factor(2.0)
///     .jitter(0.0)
///     .max_delay(Duration::from_secs(5))
///     .max_retries(Some(4));
/// let mut backoff = Backoff::with_seed(policy, 7)?;
/// let delays: Vec<_> = std::iter::from_fn(|| backoff.next_delay()).collect();
/// assert_eq!(delays, [1, 2, 4, 5].map(Duration::from_secs));
/// backoff.reset();
/// assert_eq!(backoff.next_delay(), Some(Duration::from_secs(1)));
/// # Ok::<(), torsion::reconnect::PolicyError>(())
/// ```
#[derive(Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    /// The next delay before jitter.
    delay: Duration,
    retries: u32,
    rng: SplitMix64,
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("policy", &self.policy)
            .field("delay", &self.delay)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl Backoff {
    /// A back-off with a random seed for its jitter.
    ///
    /// # Errors
    /// The policy's [`PolicyError`], if it cannot work.
    pub fn new(policy: BackoffPolicy) -> Result<Backoff, PolicyError> {
        Backoff::with_seed(policy, random_seed())
    }

    /// A back-off whose jitter comes from `seed`: the same seed gives the same
    /// delays, for tests and reproducible runs.
    ///
    /// # Errors
    /// The policy's [`PolicyError`], if it cannot work.
    pub fn with_seed(policy: BackoffPolicy, seed: u64) -> Result<Backoff, PolicyError> {
        policy.validate()?;
        Ok(Backoff {
            policy,
            delay: policy.initial,
            retries: 0,
            rng: SplitMix64(seed),
        })
    }

    /// The policy.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Retries made since the last success (or the start).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Whether the retries are used up: [`next_delay`](Self::next_delay) will
    /// return `None`.
    pub fn exhausted(&self) -> bool {
        self.policy.max_retries.is_some_and(|m| self.retries >= m)
    }

    /// Counts one more retry and returns how long to wait before it, or `None`
    /// when the policy's retries are used up (the count is then not advanced).
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.exhausted() {
            return None;
        }
        self.retries += 1;
        let base = self.delay.as_secs_f64();
        let max = self.policy.max.as_secs_f64();
        let spread = if self.policy.jitter > 0.0 {
            // Uniform in [-jitter, +jitter].
            (self.rng.next_f64() * 2.0 - 1.0) * self.policy.jitter
        } else {
            0.0
        };
        let jittered = (base * (1.0 + spread)).clamp(0.0, max);
        let delay = Duration::try_from_secs_f64(jittered).unwrap_or(self.policy.max);
        let grown = (base * self.policy.factor).min(max);
        self.delay = Duration::try_from_secs_f64(grown).unwrap_or(self.policy.max);
        Some(delay.min(self.policy.max))
    }

    /// Starts again from the initial delay with no retries counted (after a
    /// successful connection).
    pub fn reset(&mut self) {
        self.delay = self.policy.initial;
        self.retries = 0;
    }
}

/// A seed that differs between processes and calls, from std's randomly keyed
/// hasher (no extra dependency for something this small).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish()
}

/// SplitMix64: tiny, fast, good enough to spread retry delays.
#[derive(Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn no_jitter() -> BackoffPolicy {
        BackoffPolicy::default()
            .initial_delay(ms(100))
            .factor(3.0)
            .jitter(0.0)
            .max_delay(ms(1000))
    }

    #[test]
    fn first_delay_is_the_initial_delay_then_grows_to_the_cap() {
        let mut b = Backoff::with_seed(no_jitter(), 1).unwrap();
        let d: Vec<_> = (0..6).map(|_| b.next_delay().unwrap()).collect();
        assert_eq!(d, [ms(100), ms(300), ms(900), ms(1000), ms(1000), ms(1000)]);
        assert_eq!(b.retries(), 6);
    }

    #[test]
    fn max_retries_gives_up_and_stays_given_up() {
        let mut b = Backoff::with_seed(no_jitter().max_retries(Some(2)), 1).unwrap();
        assert_eq!(b.next_delay(), Some(ms(100)));
        assert!(!b.exhausted());
        assert_eq!(b.next_delay(), Some(ms(300)));
        assert!(b.exhausted());
        assert_eq!(b.next_delay(), None);
        assert_eq!(b.next_delay(), None);
        assert_eq!(b.retries(), 2);
    }

    #[test]
    fn zero_retries_never_retries() {
        let mut b = Backoff::with_seed(no_jitter().max_retries(Some(0)), 1).unwrap();
        assert_eq!(b.next_delay(), None);
    }

    #[test]
    fn reset_starts_again_from_the_initial_delay_and_count() {
        let mut b = Backoff::with_seed(no_jitter().max_retries(Some(3)), 1).unwrap();
        for _ in 0..3 {
            b.next_delay().unwrap();
        }
        assert_eq!(b.next_delay(), None);
        b.reset();
        assert_eq!(b.retries(), 0);
        assert_eq!(b.next_delay(), Some(ms(100)));
        assert_eq!(b.next_delay(), Some(ms(300)));
    }

    #[test]
    fn jitter_stays_within_its_band_and_never_exceeds_the_max() {
        let policy = BackoffPolicy::default()
            .initial_delay(ms(100))
            .factor(2.0)
            .jitter(0.5)
            .max_delay(ms(700));
        for seed in 0..200 {
            let mut b = Backoff::with_seed(policy, seed).unwrap();
            let mut base = 100.0f64;
            for _ in 0..10 {
                let d = b.next_delay().unwrap();
                assert!(d <= ms(700), "seed {seed}: {d:?} over the max");
                let lo = Duration::from_secs_f64(base * 0.5 / 1000.0);
                assert!(d >= lo.min(ms(700)), "seed {seed}: {d:?} under {lo:?}");
                let hi = Duration::from_secs_f64(base * 1.5 / 1000.0);
                assert!(d <= hi, "seed {seed}: {d:?} over {hi:?}");
                base = (base * 2.0).min(700.0);
            }
        }
    }

    #[test]
    fn jitter_actually_spreads_delays() {
        let policy = no_jitter().jitter(0.2);
        let firsts: std::collections::BTreeSet<Duration> = (0..50)
            .map(|s| Backoff::with_seed(policy, s).unwrap().next_delay().unwrap())
            .collect();
        assert!(firsts.len() > 40, "only {} distinct delays", firsts.len());
        assert!(firsts.iter().any(|d| *d < ms(100)));
        assert!(firsts.iter().any(|d| *d > ms(100)));
    }

    #[test]
    fn the_same_seed_replays_the_same_delays() {
        let policy = no_jitter().jitter(0.3);
        let run = |seed| {
            let mut b = Backoff::with_seed(policy, seed).unwrap();
            (0..8).map(|_| b.next_delay().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn huge_factors_saturate_at_the_max_instead_of_overflowing() {
        let policy = BackoffPolicy::default()
            .initial_delay(ms(1))
            .factor(1e300)
            .jitter(1.0)
            .max_delay(MAX_DELAY_LIMIT);
        let mut b = Backoff::with_seed(policy, 9).unwrap();
        for _ in 0..100 {
            assert!(b.next_delay().unwrap() <= MAX_DELAY_LIMIT);
        }
    }

    #[test]
    fn zero_delays_are_allowed() {
        let policy = BackoffPolicy::default()
            .initial_delay(Duration::ZERO)
            .max_delay(Duration::ZERO);
        let mut b = Backoff::with_seed(policy, 3).unwrap();
        assert_eq!(b.next_delay(), Some(Duration::ZERO));
        assert_eq!(b.next_delay(), Some(Duration::ZERO));
    }

    #[test]
    fn bad_policies_are_refused() {
        let p = BackoffPolicy::default();
        assert_eq!(p.factor(0.5).validate(), Err(PolicyError::Factor(0.5)));
        assert!(matches!(
            p.factor(f64::NAN).validate(),
            Err(PolicyError::Factor(_))
        ));
        assert!(matches!(
            p.factor(f64::INFINITY).validate(),
            Err(PolicyError::Factor(_))
        ));
        assert_eq!(p.jitter(1.5).validate(), Err(PolicyError::Jitter(1.5)));
        assert!(matches!(
            p.jitter(f64::NAN).validate(),
            Err(PolicyError::Jitter(_))
        ));
        assert_eq!(p.jitter(-0.1).validate(), Err(PolicyError::Jitter(-0.1)));
        assert!(matches!(
            p.initial_delay(ms(2000)).max_delay(ms(1000)).validate(),
            Err(PolicyError::InitialAboveMax { .. })
        ));
        assert!(matches!(
            p.max_delay(MAX_DELAY_LIMIT + ms(1)).validate(),
            Err(PolicyError::MaxTooLong(_))
        ));
        assert!(Backoff::with_seed(p.factor(0.0), 1).is_err());
    }
}
