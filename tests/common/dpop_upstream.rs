//! A resource server that checks DPoP (RFC 9449 §7) the way an API behind bffgate should:
//! `Authorization: DPoP <token>` with one `DPoP` proof, an `ES256` `dpop+jwt` whose
//! signature verifies under the JWK in its header, whose `htm` and `htu` are this very
//! request (method; `http://<Host><path>` without the query), whose `ath` hashes the token,
//! whose `iat` is recent, whose `jti` it has never seen, and — when it requires nonces —
//! whose `nonce` is the one it last issued. Anything else is `401` with a
//! `WWW-Authenticate: DPoP error=...` challenge; a missing or stale nonce gets
//! `use_dpop_nonce` and a `DPoP-Nonce`.
//!
//! Accepted requests are answered `200` with `{"method","path","body","jkt","token"}`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the server has seen.
#[derive(Default)]
pub struct DpopLog {
    /// Every `jti` accepted.
    jtis: HashSet<String>,
    /// Outcomes in order: `ok`, or the refusal's `error` code.
    pub outcomes: Vec<String>,
    /// The nonce currently required (when nonces are on).
    nonce: Option<String>,
    /// Accepted requests until the nonce changes (0: never).
    rotate_every: usize,
    accepted_since_rotation: usize,
    /// The last accepted request's `Authorization` and `DPoP` values.
    pub last: Option<(String, String)>,
}

/// The server; stops when dropped.
pub struct DpopUpstream {
    addr: SocketAddr,
    log: Arc<Mutex<DpopLog>>,
    task: JoinHandle<()>,
}

impl DpopUpstream {
    /// Serves on `127.0.0.1:0`. With `nonce_every = Some(n)`, proofs must carry the
    /// server's nonce, which changes after every `n` accepted requests (0: never).
    pub async fn start(nonce_every: Option<usize>) -> DpopUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(DpopLog {
            nonce: nonce_every.map(|_| fresh()),
            rotate_every: nonce_every.unwrap_or(0),
            ..Default::default()
        }));
        let shared = Arc::clone(&log);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = Arc::clone(&shared);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, Arc::clone(&log)));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        DpopUpstream { addr, log, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Outcomes so far (`ok` or an error code), in order.
    pub fn outcomes(&self) -> Vec<String> {
        self.log.lock().unwrap().outcomes.clone()
    }

    /// The last accepted request's `Authorization` and `DPoP` header values.
    pub fn last(&self) -> Option<(String, String)> {
        self.log.lock().unwrap().last.clone()
    }
}

impl Drop for DpopUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fresh() -> String {
    B64.encode(rand_bytes())
}

fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).expect("random");
    b
}

fn part(jwt: &str, i: usize) -> Option<Value> {
    let p = jwt.split('.').nth(i)?;
    serde_json::from_slice(&B64.decode(p).ok()?).ok()
}

/// The RFC 7638 thumbprint of a P-256 JWK.
pub fn jkt(jwk: &Value) -> String {
    let members = json!({ "crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"] });
    B64.encode(Sha256::digest(members.to_string().as_bytes()))
}

/// Checks one request's proof; `Err(code)` names the refusal.
fn check(
    method: &str,
    url: &str,
    auth: Option<&str>,
    proofs: &[&str],
    log: &mut DpopLog,
) -> Result<String, &'static str> {
    let token = auth
        .and_then(|a| a.strip_prefix("DPoP "))
        .ok_or("invalid_token")?;
    let [proof] = proofs else {
        return Err("invalid_dpop_proof");
    };
    let header = part(proof, 0).ok_or("invalid_dpop_proof")?;
    let claims = part(proof, 1).ok_or("invalid_dpop_proof")?;
    if header["typ"] != "dpop+jwt" || header["alg"] != "ES256" || header["jwk"].get("d").is_some() {
        return Err("invalid_dpop_proof");
    }
    let coord = |c: &str| {
        header["jwk"][c]
            .as_str()
            .and_then(|s| B64.decode(s).ok())
            .ok_or("invalid_dpop_proof")
    };
    let mut point = vec![4u8];
    point.extend(coord("x")?);
    point.extend(coord("y")?);
    let (input, sig) = proof.rsplit_once('.').ok_or("invalid_dpop_proof")?;
    let sig = B64.decode(sig).map_err(|_| "invalid_dpop_proof")?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(input.as_bytes(), &sig)
        .map_err(|_| "invalid_dpop_proof")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fresh_iat = claims["iat"]
        .as_u64()
        .is_some_and(|i| i + 60 >= now && i <= now + 5);
    let ath = B64.encode(Sha256::digest(token.as_bytes()));
    if claims["htm"] != method
        || claims["htu"] != url
        || claims["ath"] != ath.as_str()
        || !fresh_iat
    {
        return Err("invalid_dpop_proof");
    }
    if let Some(n) = &log.nonce {
        if claims["nonce"].as_str() != Some(n.as_str()) {
            return Err("use_dpop_nonce");
        }
    }
    let jti = claims["jti"].as_str().ok_or("invalid_dpop_proof")?;
    if !log.jtis.insert(jti.to_string()) {
        return Err("replayed_dpop_proof");
    }
    Ok(jkt(&header["jwk"]))
}

async fn handle(
    req: Request<Incoming>,
    log: Arc<Mutex<DpopLog>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let url = format!("http://{host}{}", parts.uri.path());
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let proofs: Vec<&str> = parts
        .headers
        .get_all("dpop")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut log = log.lock().unwrap();
    let outcome = check(parts.method.as_str(), &url, auth, &proofs, &mut log);
    let mut resp = Response::builder();
    let payload = match outcome {
        Ok(jkt) => {
            log.outcomes.push("ok".into());
            log.last = Some((auth.unwrap_or_default().into(), proofs[0].into()));
            log.accepted_since_rotation += 1;
            if log.rotate_every > 0 && log.accepted_since_rotation >= log.rotate_every {
                log.accepted_since_rotation = 0;
                log.nonce = Some(fresh());
            }
            resp = resp.status(200);
            json!({
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "body": String::from_utf8_lossy(&body),
                "jkt": jkt,
            })
        }
        Err(code) => {
            log.outcomes.push(code.into());
            resp = resp.status(401).header(
                "www-authenticate",
                format!("DPoP error=\"{code}\", algs=\"ES256\""),
            );
            json!({ "error": code })
        }
    };
    if let Some(n) = &log.nonce {
        resp = resp.header("dpop-nonce", n.as_str());
    }
    let bytes = Bytes::from(serde_json::to_vec(&payload).unwrap());
    Ok(resp
        .header("content-type", "application/json")
        .body(Full::new(bytes))
        .unwrap())
}
