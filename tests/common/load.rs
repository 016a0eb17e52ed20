//! Bounded HTTP load against a gateway, for the operations tests (a reload or an upgrade
//! must drop nothing, a key rotation must log nobody out): [`Load`] runs tasks that count
//! what succeeded and what failed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{client, fresh_connection_client};

/// What a load task saw.
#[derive(Debug, Default)]
pub struct LoadStats {
    pub ok: u64,
    pub failed: u64,
    /// The first few failures, described.
    pub failures: Vec<String>,
    /// Requests that started after the `mark` flag was raised, and how many of them failed.
    pub after_mark: u64,
    pub failed_after_mark: u64,
    /// Requests sent a second time because their connection closed before any answer, as
    /// HTTP/1.1 lets a client do for idempotent requests (RFC 9112 §9.3.1) and browsers do.
    pub retried: u64,
}

/// Whether `e` is a connection that closed (or was reset) before any of the answer came:
/// the keep-alive race an idempotent request may be sent again after.
fn closed_before_answer(e: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message())
        {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
            if matches!(io.kind(), ConnectionReset | BrokenPipe | UnexpectedEof) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

impl LoadStats {
    fn fail(&mut self, what: String, after_mark: bool) {
        self.failed += 1;
        if after_mark {
            self.failed_after_mark += 1;
        }
        if self.failures.len() < 10 {
            self.failures.push(what);
        }
    }

    fn merge(&mut self, other: LoadStats) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.after_mark += other.after_mark;
        self.failed_after_mark += other.failed_after_mark;
        self.retried += other.retried;
        for f in other.failures {
            if self.failures.len() < 20 {
                self.failures.push(f);
            }
        }
    }
}

/// A bounded load: `tasks` tasks, each GETting `paths` in turn from `base` until `stop` is
/// raised, `max_per_task` requests were sent, or `hard_cap` passed; `pause` between two
/// requests of a task. Every fifth task opens a new connection per request, the others
/// share one keep-alive pool. A request counts as good only with status 200 and a body.
pub struct Load {
    /// When the load started; failures say how long after it they happened.
    pub started: Instant,
    stop: Arc<AtomicBool>,
    mark: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<LoadStats>>,
}

/// What one load task does: its client, where it sends requests, and the session cookie
/// it presents (kept up to date from `Set-Cookie`, as a browser would), if any.
struct Task {
    client: reqwest::Client,
    bases: Vec<String>,
    cookie: Option<String>,
}

impl Load {
    pub fn start(
        base: String,
        paths: &'static [&'static str],
        tasks: usize,
        max_per_task: u64,
        hard_cap: Duration,
        pause: Duration,
    ) -> Load {
        let shared = client();
        let specs = (0..tasks)
            .map(|t| Task {
                client: if t % 5 == 0 {
                    fresh_connection_client()
                } else {
                    shared.clone()
                },
                bases: vec![base.clone()],
                cookie: None,
            })
            .collect();
        Self::run(specs, paths, max_per_task, hard_cap, pause)
    }

    /// As [`Load::start`], one task per session cookie in `cookies`, each sending its
    /// requests to the `bases` in turn (several instances) with its cookie, replaced by the
    /// one a response's `Set-Cookie` hands back (a re-sealed cookie after a key rotation).
    pub fn start_sessions(
        bases: &[String],
        cookies: Vec<String>,
        paths: &'static [&'static str],
        max_per_task: u64,
        hard_cap: Duration,
        pause: Duration,
    ) -> Load {
        let shared = client();
        let specs = cookies
            .into_iter()
            .enumerate()
            .map(|(t, cookie)| Task {
                client: if t % 5 == 0 {
                    fresh_connection_client()
                } else {
                    shared.clone()
                },
                bases: bases.to_vec(),
                cookie: Some(cookie),
            })
            .collect();
        Self::run(specs, paths, max_per_task, hard_cap, pause)
    }

    fn run(
        specs: Vec<Task>,
        paths: &'static [&'static str],
        max_per_task: u64,
        hard_cap: Duration,
        pause: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mark = Arc::new(AtomicBool::new(false));
        let load_started = Instant::now();
        let handles = specs
            .into_iter()
            .enumerate()
            .map(|(t, mut task)| {
                let (stop, mark) = (Arc::clone(&stop), Arc::clone(&mark));
                tokio::spawn(async move {
                    let mut stats = LoadStats::default();
                    let started = Instant::now();
                    let mut i: u64 = 0;
                    while !stop.load(Ordering::Relaxed)
                        && i < max_per_task
                        && started.elapsed() < hard_cap
                    {
                        let path = paths[(i as usize + t) % paths.len()];
                        let base = &task.bases[(i as usize + t) % task.bases.len()];
                        let url = format!("{base}{path}/t{t}/r{i}");
                        let after = mark.load(Ordering::Relaxed);
                        let at = load_started.elapsed();
                        if after {
                            stats.after_mark += 1;
                        }
                        let send = || {
                            let mut req = task.client.get(&url);
                            if let Some(c) = &task.cookie {
                                req = req.header("cookie", super::session_cookie(c));
                            }
                            req.send()
                        };
                        let mut sent = send().await;
                        if sent.as_ref().is_err_and(closed_before_answer) {
                            stats.retried += 1;
                            sent = send().await;
                        }
                        match sent {
                            Ok(resp) => {
                                let status = resp.status();
                                if let Some(fresh) = task.cookie.as_ref().and(set_cookie(&resp)) {
                                    task.cookie = Some(fresh);
                                }
                                match resp.bytes().await {
                                    Ok(b) if status == 200 && !b.is_empty() => stats.ok += 1,
                                    Ok(b) => stats.fail(
                                        format!(
                                            "{at:?} {url}: {status} {}",
                                            String::from_utf8_lossy(&b[..b.len().min(200)])
                                        ),
                                        after,
                                    ),
                                    Err(e) => {
                                        stats.fail(format!("{at:?} {url}: body: {e:?}"), after)
                                    }
                                }
                            }
                            Err(e) => stats.fail(format!("{at:?} {url}: {e:?}"), after),
                        }
                        i += 1;
                        tokio::time::sleep(pause).await;
                    }
                    stats
                })
            })
            .collect();
        Load {
            started: load_started,
            stop,
            mark,
            tasks: handles,
        }
    }

    /// From now on, requests count as `after_mark`.
    pub fn mark(&self) {
        self.mark.store(true, Ordering::Relaxed);
    }

    /// Stops the load and waits for its tasks: what they saw, together.
    pub async fn finish(self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = LoadStats::default();
        for t in self.tasks {
            total.merge(t.await.expect("load task"));
        }
        total
    }
}

/// The value of the session cookie a response sets, if it sets one.
fn set_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=')?;
            (name.trim() == super::COOKIE && !value.is_empty()).then(|| value.trim().to_owned())
        })
}
