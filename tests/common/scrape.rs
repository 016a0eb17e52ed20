//! Prometheus text-format scraping for tests: fetching a gateway's metrics page, one
//! parsed sample per line, and single series by their exact text.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{client, Gateway};

/// One sample line: `name{labels} value`.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of a scrape (comments and blank lines skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.trim().to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            Some(Sample {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

/// The gateway's metrics page; panics unless it answers 200.
pub async fn scrape(gw: &Gateway) -> String {
    let resp = client()
        .get(gw.metrics_url())
        .send()
        .await
        .expect("scrape metrics");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("metrics body")
}

/// The metrics page at `url` (5 s at most); empty when the scrape fails.
pub async fn scrape_url(url: &str) -> String {
    match client()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The value of the sample `series` (e.g. `bff_config_reloads_total{result="ok"}`) in a
/// Prometheus text page; `None` when there is no such line.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        (s == series).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Polls the metrics at `url` every 50 ms until `series` reaches `want`; the time that
/// took, or `None` past `limit`.
pub async fn time_until_metric(
    url: &str,
    series: &str,
    want: f64,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if metric(&scrape_url(url).await, series) == Some(want) {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
