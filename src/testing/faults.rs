//! Seeded fault injection for the [`Pump`](super::Pump).

/// Which way bytes travel on a pumped connection.
///
/// ```
/// use torsion::testing::{Direction, Pump};
/// use torsion::{Context, Protocol};
///
/// struct Quiet;
/// impl Protocol for Quiet {
///     fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
/// }
/// struct Talker;
/// impl Protocol for Talker {
///     fn connection_made(&mut self, ctx: &mut Context<'_>) {
///         ctx.write(b"hello");
///     }
///     fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
/// }
///
/// let mut pump = Pump::new();
/// let link = pump.connect(Talker, Quiet);
/// // Bytes on the wire, one way: the client (Talker) has sent, the server not.
/// assert_eq!(pump.in_flight(link, Direction::ClientToServer), 5);
/// assert_eq!(pump.in_flight(link, Direction::ServerToClient), 0);
/// pump.flush();
/// assert_eq!(pump.in_flight(link, Direction::ClientToServer), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client protocol to the server protocol.
    ClientToServer,
    /// From the server protocol to the client protocol.
    ServerToClient,
}

/// Where the pump resets connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reset {
    Never,
    At(Direction, u64),
    Random(u64),
}

/// The faults a [`Pump`](super::Pump) injects, all driven by one seed, so a
/// failing run replays exactly.
///
/// * [`split_writes`](Self::split_writes): every write is cut at random
///   boundaries, down to single bytes, each piece delivered by its own
///   `data_received`;
/// * [`delay_delivery`](Self::delay_delivery): pieces are held back a random
///   number of pump rounds (order is kept, as on a TCP stream), so the two
///   directions and the connections of a pump interleave differently;
/// * [`reset_at`](Self::reset_at) / [`reset_randomly`](Self::reset_randomly):
///   once a chosen number of bytes went one way, the connection is reset: both
///   protocols hear `connection_lost` with
///   [`DisconnectReason::Reset`](crate::DisconnectReason::Reset) and what was
///   still in flight is lost.
///
/// When a test panics while a pump with faults exists, the pump prints the
/// seed; [`Faults::from_env`] lets the test replay it with
/// `TORSION_SEED=<seed> cargo test <name>`.
///
/// ```
/// use torsion::testing::{Direction, Faults};
///
/// let faults = Faults::new(7)
///     .split_writes()
///     .delay_delivery(3)
///     .reset_at(Direction::ClientToServer, 100);
/// assert_eq!(faults.seed(), 7);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    seed: u64,
    pub(crate) split: bool,
    pub(crate) max_delay: u32,
    reset: Reset,
}

impl Default for Faults {
    fn default() -> Self {
        Self::none()
    }
}

impl Faults {
    /// No faults at all (every write arrives whole, at once).
    pub fn none() -> Faults {
        Faults {
            seed: 0,
            split: false,
            max_delay: 0,
            reset: Reset::Never,
        }
    }

    /// No faults yet, with `seed` for those added.
    pub fn new(seed: u64) -> Faults {
        Faults {
            seed,
            ..Faults::none()
        }
    }

    /// Like [`new`](Self::new), but the `TORSION_SEED` environment variable,
    /// when set to a number, overrides `seed`: the way to replay a seed that a
    /// failing test printed.
    pub fn from_env(seed: u64) -> Faults {
        let seed = std::env::var("TORSION_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(seed);
        Faults::new(seed)
    }

    /// Splits and delays: the usual chaos for "same result however the bytes
    /// arrive" tests.
    pub fn chaos(seed: u64) -> Faults {
        Faults::new(seed).split_writes().delay_delivery(4)
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether any fault is on.
    pub fn is_active(&self) -> bool {
        self.split || self.max_delay > 0 || self.reset != Reset::Never
    }

    /// Cuts every write at random boundaries, down to one byte.
    pub fn split_writes(mut self) -> Faults {
        self.split = true;
        self
    }

    /// Holds each piece back up to `max_rounds` pump rounds.
    pub fn delay_delivery(mut self, max_rounds: u32) -> Faults {
        self.max_delay = max_rounds;
        self
    }

    /// Resets every connection once `byte` bytes went `direction` (bytes
    /// `0..byte` arrive, nothing after).
    pub fn reset_at(mut self, direction: Direction, byte: u64) -> Faults {
        self.reset = Reset::At(direction, byte);
        self
    }

    /// Resets every connection at a random byte below `within`, in a random
    /// direction.
    pub fn reset_randomly(mut self, within: u64) -> Faults {
        self.reset = Reset::Random(within.max(1));
        self
    }

    /// The reset point for one connection, drawn from `rng` when random.
    pub(crate) fn reset_point(&self, rng: &mut Rng) -> Option<(Direction, u64)> {
        match self.reset {
            Reset::Never => None,
            Reset::At(d, b) => Some((d, b)),
            Reset::Random(within) => {
                let d = if rng.below(2) == 0 {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                };
                Some((d, rng.below(within)))
            }
        }
    }
}

/// A small deterministic generator (xorshift64*, seeded through splitmix64),
/// good enough to pick boundaries and delays; not for anything secret.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(z | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_spreads() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<u64> = (0..100).map(|_| a.below(10)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.below(10)).collect();
        assert_eq!(xs, ys);
        for v in 0..10 {
            assert!(xs.contains(&v), "{v} never drawn");
        }
        assert_ne!(Rng::new(1).next(), Rng::new(2).next());
    }

    #[test]
    fn random_reset_points_stay_in_range() {
        let f = Faults::new(3).reset_randomly(10);
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            let (_, b) = f.reset_point(&mut rng).unwrap();
            assert!(b < 10);
        }
        assert!(f.is_active());
        assert!(!Faults::new(3).is_active());
    }
}
