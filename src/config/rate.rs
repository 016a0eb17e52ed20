//! Rate limits (`routes[].rate_limit`, `agent.rate_limit`): the `N/s` / `N/m` / `N/h` rate
//! syntax, the burst, and which limits a place may have.

use super::file::RateLimitFile;
use super::load::Problems;
use std::time::Duration;

/// Most requests a rate may allow per second: one every microsecond, the resolution the
/// limiter counts in.
const MAX_PER_SECOND: u64 = 1_000_000;
/// Largest burst: beyond it a limit is no limit.
const MAX_BURST: u32 = 1_000_000;

/// One limit: `count` requests per `period`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period.
    pub count: u32,
    /// The period (1 s, 1 min or 1 h).
    pub period: Duration,
    /// Requests that may arrive at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl Rate {
    /// The interval between requests at the steady rate, in microseconds (at least 1).
    pub fn interval_us(self) -> u64 {
        let period = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        (period / u64::from(self.count.max(1))).max(1)
    }

    /// How far ahead of now the budget may be spent, in microseconds: `burst` intervals.
    pub fn tolerance_us(self) -> u64 {
        self.interval_us().saturating_mul(u64::from(self.burst))
    }
}

/// A place's limits; each absent one does not apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// Per session (the session's storage-key hash), on routes that read the session.
    pub per_session: Option<Rate>,
    /// Per client address (the one `server.forwarding` trusts).
    pub per_client_ip: Option<Rate>,
}

/// Parses `N/s`, `N/m` or `N/h` (spaces around the parts allowed): `(count, period)`.
///
/// # Errors
/// Why the text is not such a rate.
pub fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let Some((n, unit)) = text.split_once('/') else {
        return Err(format!("`{text}` is not a rate like 50/s, 100/m or 1000/h"));
    };
    let period = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => {
            return Err(format!(
                "`{other}` is not a rate unit: use s (second), m (minute) or h (hour)"
            ))
        }
    };
    let count: u32 = match n.trim().parse() {
        Ok(c) if c >= 1 => c,
        _ => {
            return Err(format!(
                "`{}` is not a whole number of at least 1",
                n.trim()
            ))
        }
    };
    if u64::from(count) > MAX_PER_SECOND * period.as_secs() {
        return Err(format!("more than {MAX_PER_SECOND} requests a second"));
    }
    Ok((count, period))
}

/// Checks a `rate_limit` block at `key`. `session_ok` says whether `per_session` may be
/// used there (not on `auth: none` routes or the agent endpoints: no session is read).
pub(super) fn build(
    f: Option<RateLimitFile>,
    key: &str,
    session_ok: Result<(), &str>,
    p: &mut Problems,
) -> RateLimit {
    let Some(f) = f else {
        return RateLimit::default();
    };
    if let Some(b) = f.burst {
        if b == 0 || b > MAX_BURST {
            p.add(
                format!("{key}.burst"),
                format!("must be from 1 to {MAX_BURST}"),
            );
        }
    }
    if f.per_session.is_none() && f.per_client_ip.is_none() {
        p.add(key, "names no limit: set per_session or per_client_ip");
        return RateLimit::default();
    }
    let mut one = |text: Option<String>, name: &str| {
        let text = text?;
        match parse_rate(&text) {
            Ok((count, period)) => Some(Rate {
                count,
                period,
                burst: f
                    .burst
                    .unwrap_or_else(|| super::defaults::rate_burst(count))
                    .clamp(1, MAX_BURST),
            }),
            Err(why) => {
                p.add(format!("{key}.{name}"), why);
                None
            }
        }
    };
    let mut per_session = one(f.per_session, "per_session");
    let per_client_ip = one(f.per_client_ip, "per_client_ip");
    if let (Some(_), Err(why)) = (per_session, session_ok) {
        p.add(format!("{key}.per_session"), why);
        per_session = None;
    }
    RateLimit {
        per_session,
        per_client_ip,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, problems};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rates_parse_in_three_units() {
        assert_eq!(parse_rate("50/s"), Ok((50, Duration::from_secs(1))));
        assert_eq!(parse_rate(" 100 / m "), Ok((100, Duration::from_secs(60))));
        assert_eq!(parse_rate("1/h"), Ok((1, Duration::from_secs(3600))));
        for bad in [
            "",
            "50",
            "0/s",
            "-1/s",
            "1.5/s",
            "50/d",
            "50/sec",
            "x/s",
            "/s",
            "5000000/s",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad} parsed");
        }
    }

    proptest! {
        #[test]
        fn every_written_rate_reads_back(count in 1u32..=1_000_000, unit in 0usize..3) {
            let (u, secs) = [("s", 1), ("m", 60), ("h", 3600)][unit];
            prop_assert_eq!(parse_rate(&format!("{count}/{u}")), Ok((count, Duration::from_secs(secs))));
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,20}") {
            let _ = parse_rate(&text);
        }

        /// The interval times the count never exceeds the period, and misses it by less
        /// than one count's rounding.
        #[test]
        fn interval_covers_the_period(count in 1u32..=1_000_000, unit in 0usize..3, burst in 1u32..1000) {
            let period = Duration::from_secs([1, 60, 3600][unit]);
            let r = Rate { count, period, burst };
            let total = r.interval_us() * u64::from(count);
            let us = period.as_micros() as u64;
            prop_assert!(total <= us && us - total < u64::from(count));
            prop_assert_eq!(r.tolerance_us(), r.interval_us() * u64::from(burst));
        }
    }

    #[test]
    fn limits_are_checked_where_they_are_written() {
        let text = base()
            + "agent: {rate_limit: {per_client_ip: 10/s, per_session: 1/s}}\n"
            + "routes:\n"
            + "  - {name: a, match: {path_prefix: /a}, upstreams: ['http://127.0.0.1:1'], rate_limit: {per_session: 50/s, burst: 100}}\n"
            + "  - {name: b, match: {path_prefix: /b}, upstreams: ['http://127.0.0.1:1'], auth: none, rate_limit: {per_session: 5/s}}\n"
            + "  - {name: c, match: {path_prefix: /c}, upstreams: ['http://127.0.0.1:1'], rate_limit: {per_client_ip: 5/d, burst: 0}}\n"
            + "  - {name: d, match: {path_prefix: /d}, upstreams: ['http://127.0.0.1:1'], rate_limit: {burst: 3}}\n";
        let got: Vec<(String, String)> = problems(&text)
            .into_iter()
            .map(|p| (p.key, p.reason))
            .collect();
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "agent.rate_limit.per_session",
                "routes[1].rate_limit.per_session",
                "routes[2].rate_limit.burst",
                "routes[2].rate_limit.per_client_ip",
                "routes[3].rate_limit",
            ],
            "{got:?}"
        );
    }
}
