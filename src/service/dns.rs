//! The background resolver of upstream host names (`hickory-resolver`): every name used by
//! a route of the live configuration is looked up when due and its answer published to the
//! routes' shared address slots (`live::addrs`), which the proxy reads per request.
//!
//! A name is looked up again when its records' TTL runs out, but no sooner than
//! `server.dns.refresh_min` and no later than `server.dns.refresh_max`; a failed lookup
//! keeps the last good addresses and is retried after `refresh_min`. A name that has never
//! resolved leaves its upstream out of rotation (its routes answer 502
//! `upstream_unavailable`, `bff_upstream_healthy` is 0, `/readyz` names it).

use crate::config::{Config, DnsSettings};
use crate::live::addrs::HostAddrs;
use crate::live::LiveHandle;
use async_trait::async_trait;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the resolver wakes to see which names are due (and new ones a reload added).
const TICK: Duration = Duration::from_millis(250);

/// Longest wait for one name server's answer to one query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps the addresses of the live configuration's upstream names fresh.
pub struct DnsRefresher {
    live: LiveHandle,
    settings: DnsSettings,
}

/// What the resolver remembers of one name between rounds.
struct NameState {
    due: Instant,
    /// Whether the last lookup succeeded (`None` before the first), so a change is logged
    /// once.
    ok: Option<bool>,
}

impl DnsRefresher {
    /// A resolver for the (reloadable) live configuration's names, with `server.dns` as
    /// read at start-up (changing it needs a restart).
    pub fn new(live: LiveHandle, settings: DnsSettings) -> Self {
        DnsRefresher { live, settings }
    }

    /// Every host name of the live configuration with the address slots naming it.
    fn names(&self) -> HashMap<String, Vec<Arc<HostAddrs>>> {
        let live = self.live.load_full();
        let mut out: HashMap<String, Vec<Arc<HostAddrs>>> = HashMap::new();
        for route in live.routes.routes() {
            for (i, up) in route.config.upstreams.iter().enumerate() {
                let (None, Some(slot)) = (up.ip, route.host_addrs(i)) else {
                    continue;
                };
                let slots = out.entry(up.host.clone()).or_default();
                if !slots.iter().any(|s| Arc::ptr_eq(s, slot)) {
                    slots.push(Arc::clone(slot));
                }
            }
        }
        out
    }

    /// Looks up the names that are due, all at once, and publishes the answers.
    async fn round(&self, resolver: &TokioResolver, state: &mut HashMap<String, NameState>) {
        let names = self.names();
        state.retain(|name, _| names.contains_key(name));
        let now = Instant::now();
        let mut lookups = tokio::task::JoinSet::new();
        for (name, slots) in &names {
            // A slot still empty after a good answer (a route compiled since) is filled now.
            let unfilled = slots.iter().any(|s| !s.is_resolved());
            let fresh = state
                .get(name)
                .is_some_and(|s| s.due > now && !(unfilled && s.ok == Some(true)));
            if fresh {
                continue;
            }
            let resolver = resolver.clone();
            let name = name.clone();
            lookups.spawn(async move {
                let answer = lookup(&resolver, &name).await;
                (name, answer)
            });
        }
        while let Some(joined) = lookups.join_next().await {
            let Ok((name, answer)) = joined else { continue };
            let entry = state
                .entry(name.clone())
                .or_insert(NameState { due: now, ok: None });
            let slots = names.get(&name).map(Vec::as_slice).unwrap_or_default();
            match answer {
                Ok((addrs, ttl)) => {
                    entry.due = Instant::now()
                        + ttl.clamp(self.settings.refresh_min, self.settings.refresh_max);
                    let mut changed = false;
                    for slot in slots {
                        changed |= slot.set(addrs.clone());
                    }
                    if changed || entry.ok != Some(true) {
                        tracing::info!(host = %name, addresses = ?addrs, "upstream host resolved");
                    }
                    entry.ok = Some(true);
                }
                Err(why) => {
                    entry.due = Instant::now() + self.settings.refresh_min;
                    if entry.ok != Some(false) {
                        let kept = slots.first().map(|s| s.current()).unwrap_or_default();
                        tracing::warn!(host = %name, error = %why, kept = ?kept, "upstream host does not resolve; keeping its last addresses");
                    }
                    entry.ok = Some(false);
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for DnsRefresher {
    /// Looks up due names every [`TICK`] (the first round at once) until shutdown.
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let resolver = resolver(&self.settings);
        let mut state = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        while super::next_tick(&mut tick, &mut shutdown).await {
            self.round(&resolver, &mut state).await;
        }
    }
}

/// A resolver asking `settings.nameservers` (UDP, then TCP for long answers), or the
/// system's name servers and `/etc/hosts` when none is configured. Its cache keeps no
/// answer past `refresh_max` (nor a failure past `refresh_min`), so every scheduled lookup
/// sees what the name servers say by then.
pub fn resolver(settings: &DnsSettings) -> TokioResolver {
    let (config, mut opts) = if settings.nameservers.is_empty() {
        hickory_resolver::system_conf::read_system_conf().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the system's resolver settings (/etc/resolv.conf): upstream names resolve from /etc/hosts only");
            (ResolverConfig::new(), ResolverOpts::default())
        })
    } else {
        let mut config = ResolverConfig::new();
        for ns in &settings.nameservers {
            config.add_name_server(NameServerConfig::new(*ns, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(*ns, Protocol::Tcp));
        }
        (config, ResolverOpts::default())
    };
    opts.timeout = QUERY_TIMEOUT;
    opts.positive_max_ttl = Some(settings.refresh_max);
    opts.negative_max_ttl = Some(settings.refresh_min);
    TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(opts)
        .build()
}

/// The addresses `name` resolves to and how long they may be kept (the records' TTL).
///
/// # Errors
/// Why the lookup failed: no such name or no address records, no answer, or the resolver's
/// own error text.
pub async fn lookup(
    resolver: &TokioResolver,
    name: &str,
) -> Result<(Vec<IpAddr>, Duration), String> {
    match resolver.lookup_ip(name).await {
        Ok(found) => {
            let addrs: Vec<IpAddr> = found.iter().collect();
            if addrs.is_empty() {
                return Err("no address records".into());
            }
            let ttl = found
                .valid_until()
                .saturating_duration_since(Instant::now());
            Ok((addrs, ttl))
        }
        Err(e) => Err(describe(&e)),
    }
}

fn describe(e: &ResolveError) -> String {
    if e.is_no_records_found() {
        "no such name, or no address records".into()
    } else {
        e.to_string()
    }
}

/// `--check`'s resolution report: each upstream host name of `config` with its addresses
/// or why it does not resolve, looked up once with `server.dns`.
pub async fn check_names(config: &Config) -> Vec<(String, Result<Vec<IpAddr>, String>)> {
    let resolver = resolver(&config.server.dns);
    let mut names: Vec<String> = config
        .routes
        .iter()
        .flat_map(|r| &r.upstreams)
        .filter(|u| u.ip.is_none())
        .map(|u| u.host.clone())
        .collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let answer = lookup(&resolver, &name).await.map(|(a, _)| a);
        out.push((name, answer));
    }
    out
}
