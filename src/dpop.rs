//! DPoP (RFC 9449): a session's own proof-of-possession key, and the proofs that bind each
//! token request and each proxied request to it.
//!
//! Every session gets a fresh P-256 key at login (kept, sealed, in the session record). The
//! provider binds the session's tokens to the key's thumbprint; bffgate then proves
//! possession on every call that presents them: a compact JWS of type `dpop+jwt` naming the
//! HTTP method and URL, a fresh `jti`, the time, the hash of the access token (`ath`) and
//! the server's latest nonce when it asked for one.

use crate::jose::{ec_public_members, thumbprint};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// The `DPoP` request header.
pub const HEADER: &str = "dpop";
/// The `DPoP-Nonce` response header.
pub const NONCE_HEADER: &str = "dpop-nonce";

/// A session's DPoP key pair. Never printed.
pub struct DpopKey {
    pair: EcdsaKeyPair,
    /// The proof header, serialized once: `{"alg","jwk","typ"}` base64url.
    header: String,
    jkt: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("jkt", &self.jkt)
            .finish_non_exhaustive()
    }
}

/// A DPoP key's private half as stored in a session (PKCS#8), never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey(Vec<u8>);

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredKey(<redacted>)")
    }
}

impl Serialize for StoredKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for StoredKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text)
            .map(StoredKey)
            .map_err(serde::de::Error::custom)
    }
}

/// Why a DPoP key could not be made, read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DPoP: {0}")]
pub struct DpopError(&'static str);

impl DpopKey {
    /// A fresh key from the OS's randomness, with its stored form.
    ///
    /// # Errors
    /// The OS gave no randomness.
    pub fn generate() -> Result<(DpopKey, StoredKey), DpopError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| DpopError("no randomness for a key"))?;
        let stored = StoredKey(pkcs8.as_ref().to_vec());
        Ok((DpopKey::open(&stored)?, stored))
    }

    /// The key a session stored.
    ///
    /// # Errors
    /// The stored bytes are not a P-256 PKCS#8 key.
    pub fn open(stored: &StoredKey) -> Result<DpopKey, DpopError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &stored.0, &rng)
            .map_err(|_| DpopError("the stored key is not a P-256 key"))?;
        let jwk = ec_public_members(&pair);
        let jkt = thumbprint(&jwk);
        let header = serde_json::json!({ "alg": "ES256", "jwk": jwk, "typ": "dpop+jwt" });
        Ok(DpopKey {
            header: B64.encode(header.to_string()),
            pair,
            jkt,
            rng,
        })
    }

    /// The key's RFC 7638 thumbprint (`jkt`), which bound tokens carry in `cnf`.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// A proof for one request: `method` and `url` as the server will see them (the URL
    /// without query or fragment, RFC 9449 §4.2), `access_token` when one is presented
    /// (its hash goes in `ath`), and the server's `nonce` when it gave one.
    ///
    /// # Errors
    /// Signing failed (no randomness).
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, DpopError> {
        let htu = url.split(['?', '#']).next().unwrap_or(url);
        let mut claims = serde_json::json!({
            "jti": B64.encode(crate::random::os_bytes::<16>()),
            "htm": method,
            "htu": htu,
            "iat": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        if let Some(t) = access_token {
            claims["ath"] = B64.encode(Sha256::digest(t.as_bytes())).into();
        }
        if let Some(n) = nonce {
            claims["nonce"] = n.into();
        }
        let input = format!("{}.{}", self.header, B64.encode(claims.to_string()));
        let sig = self
            .pair
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| DpopError("signing failed"))?;
        Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
    }
}

/// Whether a `WWW-Authenticate` value or an error body asks for a DPoP nonce
/// (`use_dpop_nonce`, RFC 9449 §8 and §9).
pub fn asks_for_nonce(text: &[u8]) -> bool {
    text.windows(14).any(|w| w == b"use_dpop_nonce")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    fn part(jwt: &str, i: usize) -> serde_json::Value {
        let p = jwt.split('.').nth(i).expect("part");
        serde_json::from_slice(&B64.decode(p).expect("b64")).expect("json")
    }

    #[test]
    fn a_proof_names_the_request_and_verifies_with_its_own_jwk() {
        let (key, stored) = DpopKey::generate().expect("key");
        let again = DpopKey::open(&stored).expect("reopened");
        assert_eq!(key.jkt(), again.jkt(), "the stored key is the same key");
        let proof = key
            .proof(
                "GET",
                "https://api.test/orders/1?x=1#f",
                Some("at"),
                Some("n1"),
            )
            .expect("proof");
        let (header, claims) = (part(&proof, 0), part(&proof, 1));
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert!(header["jwk"].get("d").is_none(), "no private member");
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], "https://api.test/orders/1");
        assert_eq!(claims["nonce"], "n1");
        assert_eq!(claims["ath"], B64.encode(Sha256::digest(b"at")));
        // The signature verifies under the public key in the header.
        let jwk = &header["jwk"];
        let coord = |c: &str| B64.decode(jwk[c].as_str().expect("coord")).expect("b64");
        let mut point = vec![4u8];
        point.extend(coord("x"));
        point.extend(coord("y"));
        let (input, sig) = proof.rsplit_once('.').expect("jws");
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .verify(input.as_bytes(), &B64.decode(sig).expect("sig"))
            .expect("verifies");
        // Every proof is fresh.
        let other = key
            .proof("GET", "https://api.test/orders/1", Some("at"), None)
            .expect("proof");
        assert_ne!(part(&other, 1)["jti"], claims["jti"]);
        assert!(part(&other, 1).get("nonce").is_none());
        assert!(format!("{key:?}{stored:?}").find("AAAA").is_none());
    }

    #[test]
    fn nonce_requests_are_recognised() {
        assert!(asks_for_nonce(
            b"DPoP error=\"use_dpop_nonce\", error_description=\"x\""
        ));
        assert!(asks_for_nonce(br#"{"error":"use_dpop_nonce"}"#));
        assert!(!asks_for_nonce(b"DPoP error=\"invalid_token\""));
    }
}
