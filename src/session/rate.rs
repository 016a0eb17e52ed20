//! Request-rate budgets kept beside the sessions: the GCRA arithmetic, its Redis script
//! (one atomic round trip, the server's clock), and the bounded in-process table the memory
//! store keeps them in.
//!
//! GCRA (the generic cell rate algorithm) keeps one number per budget: the theoretical
//! arrival time (`tat`) of the next request at the steady rate. A request is allowed when,
//! counting it, `tat` runs at most `burst` intervals ahead of now; the key then lives until
//! `tat` (after that, an absent key means the same), so nothing is kept longer than the
//! budget needs.

use super::{timed, SessionId, SessionStore, StoreError};
use crate::config::Rate;
use moka::sync::Cache;
use moka::Expiry;
use once_cell::sync::Lazy;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What one GCRA step decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The `tat` to store, when it changed.
    pub tat: Option<u64>,
    /// `None`: allowed; `Some(µs)`: refused, allowed again after that long.
    pub wait: Option<u64>,
}

/// One GCRA step at `now` (µs) for a budget whose `tat` is stored (or absent), with the
/// rate's `interval` and `tolerance` (`burst` intervals).
///
/// A stored `tat` further ahead than `tolerance` (the limit changed since it was written)
/// is cut to a budget just spent, and stored so: what was spent carries over, never more
/// than the current burst, and refills at the current rate.
pub fn gcra(now: u64, tat: Option<u64>, interval: u64, tolerance: u64) -> Step {
    let held = tat.unwrap_or(now).max(now);
    let base = held.min(now.saturating_add(tolerance));
    let next = base.saturating_add(interval);
    let ahead = next - now;
    if ahead > tolerance {
        Step {
            tat: (base < held).then_some(base),
            wait: Some(ahead - tolerance),
        }
    } else {
        Step {
            tat: Some(next),
            wait: None,
        }
    }
}

/// [`gcra`] in Lua (the same steps, the same cap), on the Redis server's clock so instances with skewed clocks share one
/// budget. `KEYS[1]`: the budget; `ARGV`: interval and tolerance (µs). Returns 0 when
/// allowed, else the µs to wait. One key, so one Cluster slot.
pub(super) static SCRIPT: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if tat < now then tat = now end
local cut = tat > now + tolerance
if cut then tat = now + tolerance end
local next_tat = tat + interval
local ahead = next_tat - now
if ahead > tolerance then
  if cut then
    redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', string.format('%.0f', math.max(1, math.ceil((tat - now) / 1000))))
  end
  return ahead - tolerance
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', string.format('%.0f', math.ceil(ahead / 1000)))
return 0
",
    )
});

/// Budgets the memory store tracks at once; beyond it the least recently used go first
/// (their clients start afresh), so a flood from many addresses cannot grow memory.
pub const MAX_MEMORY_BUDGETS: u64 = 100_000;

/// A budget in memory: its `tat` (µs since the table's origin).
#[derive(Clone, Copy)]
struct Budget {
    tat: u64,
    origin: Instant,
}

struct UntilTat;

impl Expiry<String, Budget> for UntilTat {
    fn expire_after_create(&self, _: &String, b: &Budget, now: Instant) -> Option<Duration> {
        Some((b.origin + Duration::from_micros(b.tat)).saturating_duration_since(now))
    }
    fn expire_after_update(
        &self,
        k: &String,
        b: &Budget,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(k, b, now)
    }
}

/// The memory store's budgets: bounded in number, each gone once its `tat` passes.
pub(super) struct MemoryBudgets {
    origin: Instant,
    budgets: Cache<String, Budget>,
}

impl MemoryBudgets {
    pub(super) fn new(capacity: u64) -> Self {
        MemoryBudgets {
            origin: Instant::now(),
            budgets: Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .expire_after(UntilTat)
                .build(),
        }
    }

    /// One GCRA step for `key`, atomic per key.
    pub(super) fn step(&self, key: &str, rate: Rate) -> Option<Duration> {
        let now = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut wait = None;
        self.budgets.entry_by_ref(key).and_compute_with(|held| {
            let tat = held.map(|e| e.into_value().tat);
            let step = gcra(now, tat, rate.interval_us(), rate.tolerance_us());
            wait = step.wait.map(Duration::from_micros);
            match step.tat {
                Some(tat) => moka::ops::compute::Op::Put(Budget {
                    tat,
                    origin: self.origin,
                }),
                None => moka::ops::compute::Op::Nop,
            }
        });
        wait
    }

    /// Budgets held now (after pending expiries and evictions are applied).
    #[cfg(test)]
    pub(super) fn len(&self) -> u64 {
        self.budgets.run_pending_tasks();
        self.budgets.entry_count()
    }
}

/// Whose budget a request spends.
#[derive(Debug, Clone, Copy)]
pub enum Spender<'a> {
    /// A session (its budget is named after the session's storage-key hash).
    Session(&'a SessionId),
    /// A client address (`None`: a Unix-socket peer; they share one budget).
    Client(Option<IpAddr>),
}

impl SessionStore {
    /// Spends one request of `spender`'s budget under `scope` (a route name, or `agent`) at
    /// `rate`, on every instance sharing this store; `Some(wait)` when it is spent.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn spend(
        &self,
        scope: &str,
        spender: Spender<'_>,
        rate: Rate,
    ) -> Result<Option<Duration>, StoreError> {
        let key = match spender {
            Spender::Session(id) => self.codec.load().session_key(id, &format!("rl:{scope}")),
            // Addresses are keyed through the index HMAC: the store never holds them.
            Spender::Client(ip) => {
                let ip = ip.map_or_else(|| "unix".to_string(), |ip| ip.to_string());
                self.codec
                    .load()
                    .index_name("rl", &format!("{scope}\0{ip}"))
            }
        };
        timed("rate", self.backend.rate(&key, rate)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rate(count: u32, burst: u32) -> Rate {
        Rate {
            count,
            period: Duration::from_secs(1),
            burst,
        }
    }

    /// Runs a step, keeping the stored `tat` as a store would; the wait if refused.
    fn run(now: u64, tat: &mut Option<u64>, interval: u64, tolerance: u64) -> Option<u64> {
        let step = gcra(now, *tat, interval, tolerance);
        if step.tat.is_some() {
            *tat = step.tat;
        }
        step.wait
    }

    #[test]
    fn a_fresh_budget_allows_the_burst_then_waits_one_interval() {
        let (i, t) = (100_000, 500_000); // 10/s, burst 5
        let mut tat = None;
        for n in 0..5 {
            assert_eq!(run(1_000_000, &mut tat, i, t), None, "request {n}");
        }
        assert_eq!(run(1_000_000, &mut tat, i, t), Some(i));
        assert_eq!(run(1_000_000 + i, &mut tat, i, t), None);
    }

    #[test]
    fn a_changed_limit_reads_a_spent_budget_at_the_new_rate() {
        // Spent at 1/h, burst 2: `tat` two hours ahead.
        let hour = 3_600_000_000;
        let mut tat = Some(1_000 + 2 * hour);
        assert!(run(1_000, &mut tat, hour, 2 * hour).is_some());
        // Raised to 1000/s, burst 10: spent, one interval (1 ms) from allowed, and so stored.
        assert_eq!(run(1_000, &mut tat, 1_000, 10_000), Some(1_000));
        assert_eq!(tat, Some(11_000));
        assert_eq!(run(2_000, &mut tat, 1_000, 10_000), None);
        // Lowered back to 1/h: what was spent at the fast rate is a whole burst's worth at most.
        assert_eq!(run(2_000, &mut tat, hour, 2 * hour), None);
    }

    proptest! {
        /// Over any schedule, the allowed requests never exceed the burst plus one per
        /// interval elapsed; a refused request's wait is at most one interval, and waiting
        /// it is enough.
        #[test]
        fn never_more_than_burst_plus_rate(
            interval in 1u64..1_000_000,
            burst in 1u64..50,
            gaps in proptest::collection::vec(0u64..2_000_000, 1..200),
        ) {
            let tolerance = interval * burst;
            let (mut now, mut tat, mut allowed) = (10_000_000u64, None, 0u64);
            let start = now;
            for gap in gaps {
                now += gap;
                match run(now, &mut tat, interval, tolerance) {
                    None => allowed += 1,
                    Some(wait) => {
                        prop_assert!(wait >= 1 && wait <= interval);
                        prop_assert_eq!(gcra(now + wait, tat, interval, tolerance).wait, None);
                    }
                }
                prop_assert!(allowed <= burst + (now - start) / interval);
            }
        }
    }

    #[test]
    fn memory_budgets_are_per_key_and_bounded() {
        let b = MemoryBudgets::new(50);
        let r = rate(1, 3);
        assert_eq!((0..10).filter(|_| b.step("a", r).is_none()).count(), 3);
        let wait = b.step("a", r).expect("spent");
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(b.step("b", r).is_none());
        for n in 0..1000 {
            b.step(&format!("flood{n}"), r);
        }
        assert!(b.len() <= 50, "{} budgets held", b.len());
    }

    #[test]
    fn an_unused_budget_is_forgotten_once_its_tat_passes() {
        let b = MemoryBudgets::new(10);
        let r = Rate {
            count: 2,
            period: Duration::from_secs(1),
            burst: 1,
        };
        // Whole again 500 ms from now: held until then, not after.
        assert!(b.step("a", r).is_none());
        assert!(b.budgets.contains_key("a"));
        std::thread::sleep(Duration::from_millis(800));
        assert!(!b.budgets.contains_key("a"));
    }
}
