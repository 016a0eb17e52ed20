//! The compiled route table: which route takes a request, whether its path is safe, and
//! each route's upstream rotation, addresses and health state.

use super::addrs::{self, HostAddrs};
use crate::config::{RouteConfig, UpstreamConfig};
use crate::metrics;
use crate::path::{
    has_params, is_suspicious, normalise, normalise_params_first, segment_prefix, strip_params,
    PathError, PathParams,
};
use http::Method;
use pingora_prometheus::prometheus::Histogram;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// A route ready to serve: its config plus per-route runtime state.
#[derive(Debug)]
pub struct Route {
    /// The validated config.
    pub config: RouteConfig,
    next: AtomicUsize,
    /// Per upstream: until when (ms since the Unix epoch) it is taken out of rotation.
    down_until: Vec<AtomicU64>,
    /// Per upstream: the latest DPoP nonce it sent (RFC 9449 §9).
    dpop_nonces: Vec<arc_swap::ArcSwapOption<String>>,
    /// Per upstream: the addresses its host resolves to now.
    addrs: Vec<Arc<HostAddrs>>,
    /// This route's latency histogram, looked up once.
    pub duration: Histogram,
    /// This route's upstream latency histogram, looked up once.
    pub upstream_duration: Histogram,
    /// This route's `bff_requests_total{status="200"}`, looked up once: the common answer.
    pub ok: prometheus::IntCounter,
}

impl Route {
    fn new(config: RouteConfig) -> Self {
        let duration = metrics::REQUEST_DURATION.with_label_values(&[config.name.as_str()]);
        let upstream_duration =
            metrics::UPSTREAM_DURATION.with_label_values(&[config.name.as_str()]);
        let ok = metrics::REQUESTS.with_label_values(&[config.name.as_str(), "200"]);
        metrics::init_rate_limits(&config.name, &config.rate_limit);
        Route {
            down_until: config.upstreams.iter().map(|_| AtomicU64::new(0)).collect(),
            dpop_nonces: config
                .upstreams
                .iter()
                .map(|_| Default::default())
                .collect(),
            addrs: config
                .upstreams
                .iter()
                .map(|u| addrs::for_host(&u.host, u.ip))
                .collect(),
            config,
            next: AtomicUsize::new(0),
            duration,
            upstream_duration,
            ok,
        }
    }

    /// The DPoP nonce upstream `i` last sent, if any.
    pub fn dpop_nonce(&self, i: usize) -> Option<Arc<String>> {
        self.dpop_nonces.get(i).and_then(|n| n.load_full())
    }

    /// Remembers the DPoP nonce upstream `i` sent.
    pub fn set_dpop_nonce(&self, i: usize, nonce: &str) {
        if let Some(n) = self.dpop_nonces.get(i) {
            if n.load().as_deref().map(String::as_str) != Some(nonce) {
                n.store(Some(Arc::new(nonce.to_string())));
            }
        }
    }

    /// The next upstream in round-robin order, skipping those out of rotation (taken out
    /// by a failed connect or health check, or without an address yet) unless every one
    /// is. Returns its index and the address to connect to: the next of its host's
    /// addresses, `None` while its name has never resolved.
    pub fn next_upstream(&self) -> Option<(usize, &UpstreamConfig, Option<SocketAddr>)> {
        let ups = &self.config.upstreams;
        if ups.is_empty() {
            return None;
        }
        // The clock is read only when an upstream has been taken out (at most once).
        let mut now = None;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let healthy = (0..ups.len())
            .map(|k| (start + k) % ups.len())
            .find(|&i| self.in_rotation_at(i, &mut now));
        let i = healthy.unwrap_or(start % ups.len());
        let addr = self.addrs.get(i).and_then(|a| a.pick(ups[i].port));
        Some((i, &ups[i], addr))
    }

    /// The addresses upstream `i`'s host resolves to now (empty while it has none).
    pub fn addresses(&self, i: usize) -> Arc<Vec<std::net::IpAddr>> {
        self.addrs.get(i).map(|a| a.current()).unwrap_or_default()
    }

    /// Upstream `i`'s shared address slot, for the resolver to fill.
    pub fn host_addrs(&self, i: usize) -> Option<&Arc<HostAddrs>> {
        self.addrs.get(i)
    }

    /// The upstreams whose host name has not resolved yet.
    pub fn unresolved(&self) -> impl Iterator<Item = &UpstreamConfig> {
        self.config
            .upstreams
            .iter()
            .zip(&self.addrs)
            .filter(|(_, a)| !a.is_resolved())
            .map(|(u, _)| u)
    }

    /// Takes upstream `i` out of rotation for (at least) `for_ms` milliseconds.
    pub fn mark_down(&self, i: usize, for_ms: u64) {
        if let Some(d) = self.down_until.get(i) {
            // Never shortens an ejection already in force.
            d.fetch_max(now_millis().saturating_add(for_ms), Ordering::Relaxed);
        }
    }

    /// Whether upstream `i` is in rotation now: it has an address and is not taken out by
    /// a failed connect or check.
    pub fn in_rotation(&self, i: usize) -> bool {
        self.in_rotation_at(i, &mut None)
    }

    /// [`Self::in_rotation`] at `now` (ms since the Unix epoch), read into it on first need:
    /// an upstream never taken out needs no clock.
    fn in_rotation_at(&self, i: usize, now: &mut Option<u64>) -> bool {
        self.addrs.get(i).is_some_and(|a| a.is_resolved())
            && self.down_until.get(i).is_some_and(|d| {
                let until = d.load(Ordering::Relaxed);
                until == 0 || until <= *now.get_or_insert_with(now_millis)
            })
    }

    /// Puts upstream `i` back into rotation.
    pub fn mark_up(&self, i: usize) {
        if let Some(d) = self.down_until.get(i) {
            d.store(0, Ordering::Relaxed);
        }
    }
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What the table says about a request.
#[derive(Debug, Clone)]
pub enum RouteMatch {
    /// This route takes it.
    Found(Arc<Route>),
    /// A route has the path but not the method.
    MethodNotAllowed,
    /// No route has the path.
    NotFound,
}

/// Routes ordered for matching: longest prefix first, host-specific before any-host.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    by_host: bool,
}

impl RouteTable {
    /// Compiles validated routes.
    pub fn new(configs: &[RouteConfig]) -> Self {
        let mut routes: Vec<Arc<Route>> = configs
            .iter()
            .cloned()
            .map(|c| Arc::new(Route::new(c)))
            .collect();
        routes.sort_by(|a, b| {
            b.config
                .path_prefix
                .len()
                .cmp(&a.config.path_prefix.len())
                .then(b.config.host.is_some().cmp(&a.config.host.is_some()))
        });
        let by_host = routes.iter().any(|r| r.config.host.is_some());
        metrics::init_routes(routes.iter().map(|r| r.config.name.as_str()));
        RouteTable { routes, by_host }
    }

    /// Whether any route matches on the host: if none does, the host need not be read.
    pub fn matches_host(&self) -> bool {
        self.by_host
    }

    /// The routes, in matching order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// Finds the route for a request. `host` is lowercase without a port; `path` has no query.
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> RouteMatch {
        let mut path_matched = false;
        for route in &self.routes {
            let c = &route.config;
            if !segment_prefix(&c.path_prefix, path) {
                continue;
            }
            if c.host.as_deref().is_some_and(|h| Some(h) != host) {
                continue;
            }
            if c.methods.as_ref().is_some_and(|ms| !ms.contains(method)) {
                path_matched = true;
                continue;
            }
            return RouteMatch::Found(Arc::clone(route));
        }
        if path_matched {
            RouteMatch::MethodNotAllowed
        } else {
            RouteMatch::NotFound
        }
    }

    /// Routes a raw path (no query) on what a lenient upstream will read, refusing paths
    /// whose meaning upstreams could read differently. The route is chosen on the path
    /// without `;` parameters ([`strip_params`]); a path that needs decoding or
    /// normalising must land on the same route under every reading ([`normalise`] and
    /// [`normalise_params_first`]), and a dot-segment in any spelling is refused. Plain
    /// paths skip the extra work.
    ///
    /// # Errors
    /// [`PathError`] says why the path is refused; [`PathError::Params`] for any `;` when
    /// `params` is [`PathParams::Refuse`].
    pub fn find_checked(
        &self,
        host: Option<&str>,
        method: &Method,
        raw: &str,
        params: PathParams,
    ) -> Result<RouteMatch, PathError> {
        if params == PathParams::Refuse && has_params(raw) {
            return Err(PathError::Params);
        }
        let key = strip_params(raw);
        let found = self.find(host, method, &key);
        if !is_suspicious(raw) {
            return Ok(found);
        }
        for reading in [normalise(raw)?, normalise_params_first(raw)?] {
            let again = self.find(host, method, &reading);
            let same = match (&found, &again) {
                (RouteMatch::Found(a), RouteMatch::Found(b)) => Arc::ptr_eq(a, b),
                (RouteMatch::NotFound, RouteMatch::NotFound) => true,
                (RouteMatch::MethodNotAllowed, RouteMatch::MethodNotAllowed) => true,
                _ => false,
            };
            if !same {
                return Err(PathError::Ambiguous);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthMode;

    fn route(
        name: &str,
        prefix: &str,
        host: Option<&str>,
        methods: Option<Vec<Method>>,
    ) -> RouteConfig {
        crate::live::testing::route_config(name, prefix, host, methods, AuthMode::None)
    }

    fn table() -> RouteTable {
        RouteTable::new(&[
            route("api", "/api", None, None),
            route("orders", "/api/orders", None, Some(vec![Method::GET])),
            route("orders-host", "/api/orders", Some("b.test"), None),
            route("admin", "/admin", None, None),
        ])
    }

    fn name(m: Result<RouteMatch, PathError>) -> String {
        match m {
            Ok(RouteMatch::Found(r)) => r.config.name.clone(),
            Ok(RouteMatch::MethodNotAllowed) => "405".into(),
            Ok(RouteMatch::NotFound) => "404".into(),
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn longest_prefix_then_host_then_method() {
        let t = table();
        let get = |h: Option<&str>, m: &Method, p: &str| {
            name(t.find_checked(h, m, p, PathParams::default()))
        };
        assert_eq!(get(None, &Method::GET, "/api/orders/1"), "orders");
        assert_eq!(
            get(Some("b.test"), &Method::POST, "/api/orders"),
            "orders-host"
        );
        assert_eq!(get(None, &Method::POST, "/api/orders"), "api");
        assert_eq!(get(None, &Method::GET, "/api/ordersx"), "api");
        assert_eq!(get(None, &Method::GET, "/nope"), "404");
        let only = RouteTable::new(&[route("r", "/r", None, Some(vec![Method::GET]))]);
        assert_eq!(
            name(only.find_checked(None, &Method::PUT, "/r", PathParams::default())),
            "405"
        );
    }

    #[test]
    fn an_upstream_without_an_address_is_out_of_rotation() {
        let mut config = route("r", "/r", None, None);
        for (host, ip) in [
            ("127.0.0.1", Some("127.0.0.1")),
            ("never.routes.test", None),
        ] {
            config.upstreams.push(UpstreamConfig {
                host: host.into(),
                port: 8080,
                ip: ip.map(|i| i.parse().unwrap()),
                tls: false,
            });
        }
        let table = RouteTable::new(&[config]);
        let r = &table.routes()[0];
        for _ in 0..4 {
            let (i, _, addr) = r.next_upstream().unwrap();
            assert_eq!((i, addr), (0, Some("127.0.0.1:8080".parse().unwrap())));
        }
        assert!(r.in_rotation(0) && !r.in_rotation(1));
        let missing: Vec<_> = r.unresolved().map(|u| u.host.as_str()).collect();
        assert_eq!(missing, ["never.routes.test"]);
        // Once resolved, it takes its turn.
        r.host_addrs(1)
            .unwrap()
            .set(vec!["10.1.2.3".parse().unwrap()]);
        let picked: Vec<_> = (0..2).map(|_| r.next_upstream().unwrap().0).collect();
        assert!(picked.contains(&1), "{picked:?}");
        assert_eq!(r.unresolved().count(), 0);
    }

    #[test]
    fn paths_that_would_reroute_are_refused() {
        let t = table();
        let get = |p: &str| name(t.find_checked(None, &Method::GET, p, PathParams::default()));
        assert_eq!(get("/api/orders/a%20b"), "orders");
        assert_eq!(get("/api/orders/a%2Fb"), "orders");
        assert_eq!(get("/api/../admin"), "DotSegment");
        assert_eq!(get("/api/%2e%2E/admin"), "DotSegment");
        assert_eq!(get("/api/./orders"), "DotSegment");
        assert_eq!(get("/%61dmin"), "Ambiguous");
        assert_eq!(get("/api%2Forders"), "Ambiguous");
        assert_eq!(get("//admin"), "Ambiguous");
        assert_eq!(get("/api\\orders"), "Ambiguous");
        assert_eq!(get("/x%00"), "DotSegment");
    }

    #[test]
    fn path_parameters_route_as_lenient_upstreams_read_them() {
        let mut routes = vec![
            route("all", "/", None, None),
            route("pub", "/pub", None, None),
        ];
        routes.push(route("api", "/api", None, None));
        let t = RouteTable::new(&routes);
        let get = |p: &str, mode| name(t.find_checked(None, &Method::GET, p, mode));
        let strip = PathParams::StripForRouting;
        assert_eq!(get("/api;x=1/secret", strip), "api");
        assert_eq!(get("/api;jsessionid=1", strip), "api");
        assert_eq!(get("/pub;x/file", strip), "pub");
        for dots in [
            "/pub/..;/api/secret",
            "/pub/.;x/api",
            "/pub/%2e%2e;/api",
            "/pub/%2e./api",
        ] {
            assert_eq!(get(dots, strip), "DotSegment", "{dots}");
        }
        // Decode-first upstreams split on `%3b`, Tomcat keeps it: routes differ, refused.
        assert_eq!(get("/api%3bx/secret", strip), "Ambiguous");
        let refuse = PathParams::Refuse;
        assert_eq!(get("/api;x=1/secret", refuse), "Params");
        assert_eq!(get("/api%3Bx/secret", refuse), "Params");
        assert_eq!(get("/api/secret", refuse), "api");
    }
}
