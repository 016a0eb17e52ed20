//! bffgate's own signing key for `private_key_jwt` client authentication (RFC 7523): read
//! from a PEM file, its public half as a JWK (with its RFC 7638 thumbprint as the default
//! `kid`), and compact JWS signing.
//!
//! The signatures are `ring`'s (RSA PKCS#1 v1.5 and PSS with SHA-256, ECDSA P-256 with
//! SHA-256); this module only frames them as JOSE. Randomness (PSS salts, ECDSA nonces,
//! RSA blinding) comes from the OS.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use sha2::{Digest, Sha256};

/// The JWS algorithms a signing key may use.
pub const SIGNING_ALGS: [&str; 3] = ["RS256", "PS256", "ES256"];

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A private signing key with its algorithm and key id. Never printed.
pub struct SigningKey {
    pair: Pair,
    alg: &'static str,
    kid: String,
    /// The public JWK (with `kid`, `alg`, `use`).
    public: serde_json::Value,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PEM private key: RSA (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`, at
    /// least 2048 bits) or EC P-256 (PKCS#8). `alg` chooses among the algorithms the key
    /// can do (RSA: RS256 by default, or PS256; EC: ES256); `kid` defaults to the public
    /// key's RFC 7638 thumbprint.
    ///
    /// # Errors
    /// A text saying why the key cannot be used (never the key's contents).
    pub fn from_pem(pem: &[u8], alg: Option<&str>, kid: Option<&str>) -> Result<Self, String> {
        let der = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|_| "not a PEM private key (RSA PKCS#1/PKCS#8 or EC PKCS#8)".to_string())?;
        let rng = SystemRandom::new();
        let (pair, alg) = match &der {
            PrivateKeyDer::Pkcs1(k) => (rsa(RsaKeyPair::from_der(k.secret_pkcs1_der()))?, alg),
            PrivateKeyDer::Pkcs8(k) => {
                let bytes = k.secret_pkcs8_der();
                match RsaKeyPair::from_pkcs8(bytes) {
                    Ok(p) => (rsa(Ok(p))?, alg),
                    Err(_) => {
                        let p = EcdsaKeyPair::from_pkcs8(
                            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                            bytes,
                            &rng,
                        )
                        .map_err(|_| {
                            "unsupported key: only RSA (2048 bits or more) and EC P-256 keys"
                                .to_string()
                        })?;
                        (Pair::Ec(p), alg)
                    }
                }
            }
            PrivateKeyDer::Sec1(_) => {
                return Err(
                    "an EC key must be PKCS#8 (`BEGIN PRIVATE KEY`; convert with `openssl pkcs8 -topk8 -nocrypt`)"
                        .into(),
                )
            }
            _ => return Err("unsupported private key format".into()),
        };
        let alg: &'static str = match (&pair, alg) {
            (Pair::Rsa(_), None | Some("RS256")) => "RS256",
            (Pair::Rsa(_), Some("PS256")) => "PS256",
            (Pair::Ec(_), None | Some("ES256")) => "ES256",
            (Pair::Rsa(_), Some(other)) => {
                return Err(format!(
                    "`{other}` cannot be used with an RSA key (RS256 or PS256)"
                ))
            }
            (Pair::Ec(_), Some(other)) => {
                return Err(format!(
                    "`{other}` cannot be used with an EC P-256 key (ES256)"
                ))
            }
        };
        let members = public_members(&pair);
        let kid = match kid {
            Some(k) => k.to_string(),
            None => thumbprint(&members),
        };
        let mut public = members;
        if let Some(o) = public.as_object_mut() {
            o.insert("kid".into(), kid.clone().into());
            o.insert("alg".into(), alg.into());
            o.insert("use".into(), "sig".into());
        }
        Ok(SigningKey {
            pair,
            alg,
            kid,
            public,
            rng,
        })
    }

    /// The JWS algorithm.
    pub fn alg(&self) -> &'static str {
        self.alg
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK Set holding this key alone.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.public.clone()] })
    }

    /// A compact JWS of `claims` with header `{alg, kid, typ: "JWT"}`.
    ///
    /// # Errors
    /// The signature failed (an OS randomness failure).
    pub fn sign_jwt(&self, claims: &serde_json::Value) -> Result<String, String> {
        let header = serde_json::json!({ "alg": self.alg, "kid": self.kid, "typ": "JWT" });
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = match &self.pair {
            Pair::Rsa(p) => {
                let padding: &dyn signature::RsaEncoding = if self.alg == "PS256" {
                    &signature::RSA_PSS_SHA256
                } else {
                    &signature::RSA_PKCS1_SHA256
                };
                let mut out = vec![0u8; p.public().modulus_len()];
                p.sign(padding, &self.rng, input.as_bytes(), &mut out)
                    .map_err(|_| "RSA signing failed".to_string())?;
                out
            }
            Pair::Ec(p) => p
                .sign(&self.rng, input.as_bytes())
                .map_err(|_| "ECDSA signing failed".to_string())?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{input}.{}", B64.encode(sig)))
    }
}

fn rsa(pair: Result<RsaKeyPair, ring::error::KeyRejected>) -> Result<Pair, String> {
    pair.map(Pair::Rsa)
        .map_err(|e| format!("unusable RSA key: {e} (at least 2048 bits)"))
}

/// The RFC 7638 required members of the public key, as a JSON object.
fn public_members(pair: &Pair) -> serde_json::Value {
    match pair {
        Pair::Rsa(p) => {
            let c: signature::RsaPublicKeyComponents<Vec<u8>> = p.public().into();
            serde_json::json!({ "e": B64.encode(c.e), "kty": "RSA", "n": B64.encode(c.n) })
        }
        Pair::Ec(p) => ec_public_members(p),
    }
}

/// The RFC 7638 required members of a P-256 key's public half.
pub(crate) fn ec_public_members(p: &EcdsaKeyPair) -> serde_json::Value {
    // An uncompressed point: 0x04 ‖ x ‖ y, 32 bytes each for P-256.
    let coords = p.public_key().as_ref().get(1..).unwrap_or_default();
    let (x, y) = coords.split_at(coords.len() / 2);
    serde_json::json!({ "crv": "P-256", "kty": "EC", "x": B64.encode(x), "y": B64.encode(y) })
}

/// The RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order
/// without whitespace (`serde_json` keeps object keys sorted), base64url.
pub(crate) fn thumbprint(members: &serde_json::Value) -> String {
    B64.encode(Sha256::digest(members.to_string().as_bytes()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ring::signature::UnparsedPublicKey;

    /// A fresh private key from `openssl genpkey` (PKCS#8 PEM), converted with
    /// `openssl <convert...>` when given (e.g. `["rsa", "-traditional"]` for PKCS#1).
    pub(crate) fn openssl_key(gen: &[&str], convert: &[&str]) -> Vec<u8> {
        let out = std::process::Command::new("openssl")
            .arg("genpkey")
            .args(gen)
            .output()
            .expect("openssl genpkey");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if convert.is_empty() {
            return out.stdout;
        }
        let mut child = std::process::Command::new("openssl")
            .args(convert)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl convert");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&out.stdout)
            .expect("write");
        let out = child.wait_with_output().expect("convert");
        assert!(out.status.success());
        out.stdout
    }

    pub(crate) const RSA: [&str; 4] = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
    pub(crate) const P256: [&str; 4] = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];

    fn b64(s: &str) -> Vec<u8> {
        B64.decode(s).expect("base64url")
    }

    /// Verifies `jwt` with the public JWK `key` publishes, the way a provider would.
    fn verify(key: &SigningKey, jwt: &str) -> serde_json::Value {
        let jwk = &key.jwks()["keys"][0];
        let (input, sig) = jwt.rsplit_once('.').expect("three parts");
        let header: serde_json::Value =
            serde_json::from_slice(&b64(input.split('.').next().expect("header"))).expect("json");
        assert_eq!(header["alg"], jwk["alg"]);
        assert_eq!(header["kid"], jwk["kid"]);
        let sig = b64(sig);
        let ok = match jwk["kty"].as_str() {
            Some("RSA") => {
                let n = b64(jwk["n"].as_str().expect("n"));
                let e = b64(jwk["e"].as_str().expect("e"));
                let params = if jwk["alg"] == "PS256" {
                    &signature::RSA_PSS_2048_8192_SHA256
                } else {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, input.as_bytes(), &sig)
                    .is_ok()
            }
            _ => {
                let mut point = vec![4u8];
                point.extend(b64(jwk["x"].as_str().expect("x")));
                point.extend(b64(jwk["y"].as_str().expect("y")));
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(input.as_bytes(), &sig)
                    .is_ok()
            }
        };
        assert!(ok, "the signature verifies with the published key");
        serde_json::from_slice(&b64(input.split('.').nth(1).expect("payload"))).expect("claims")
    }

    #[test]
    fn rs256_ps256_and_es256_sign_what_the_published_key_verifies() {
        let claims = serde_json::json!({"iss": "bff", "jti": "x"});
        let rsa_pem = openssl_key(&RSA, &[]);
        let pkcs1 = openssl_key(&RSA, &["rsa", "-traditional"]);
        assert!(String::from_utf8_lossy(&pkcs1).contains("BEGIN RSA PRIVATE KEY"));
        for (pem, alg, want) in [
            (&rsa_pem, None, "RS256"),
            (&rsa_pem, Some("PS256"), "PS256"),
            (&pkcs1, None, "RS256"),
            (&openssl_key(&P256, &[]), None, "ES256"),
        ] {
            let key = SigningKey::from_pem(pem, alg, None).expect("key");
            assert_eq!(key.alg(), want);
            // Two signatures of the same claims both verify (PSS and ECDSA are randomised).
            for _ in 0..2 {
                let jwt = key.sign_jwt(&claims).expect("signed");
                assert_eq!(verify(&key, &jwt), claims);
            }
            // The default kid is the RFC 7638 thumbprint of the published key.
            let jwk = &key.jwks()["keys"][0];
            let members: serde_json::Value = match jwk["kty"].as_str() {
                Some("RSA") => serde_json::json!({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}),
                _ => serde_json::json!({"crv": "P-256", "kty": "EC", "x": jwk["x"], "y": jwk["y"]}),
            };
            assert_eq!(key.kid(), thumbprint(&members));
            assert!(jwk.get("d").is_none(), "no private member is published");
        }
        let named = SigningKey::from_pem(&rsa_pem, None, Some("k-2026")).expect("key");
        assert_eq!(named.kid(), "k-2026");
    }

    #[test]
    fn unusable_keys_and_mismatched_algorithms_are_refused() {
        let ec = openssl_key(&P256, &[]);
        let rsa_pem = openssl_key(&RSA, &[]);
        let sec1 = openssl_key(&P256, &["ec"]);
        let small = openssl_key(
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
            &[],
        );
        let p384 = openssl_key(
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            &[],
        );
        let ed = openssl_key(&["-algorithm", "ED25519"], &[]);
        let refused = |pem: &[u8], alg: Option<&str>| {
            SigningKey::from_pem(pem, alg, None).expect_err("refused")
        };
        assert!(refused(&ec, Some("RS256")).contains("EC P-256"));
        assert!(refused(&rsa_pem, Some("ES256")).contains("RSA"));
        assert!(refused(&sec1, None).contains("PKCS#8"));
        assert!(refused(&small, None).contains("2048"));
        assert!(refused(&p384, None).contains("unsupported"));
        assert!(refused(&ed, None).contains("unsupported"));
        assert!(refused(b"not a key", None).contains("PEM"));
    }

    /// RFC 7638 §3.1's example key and its thumbprint.
    #[test]
    fn thumbprint_matches_rfc_7638() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let members = serde_json::json!({"kty": "RSA", "n": n, "e": "AQAB"});
        assert_eq!(
            thumbprint(&members),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
