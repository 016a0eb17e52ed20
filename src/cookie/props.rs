//! Property tests of the cookie parser, the unsealer and the `Set-Cookie` filter.
//!
//! The suite runs proptest's default 256 cases per property; set `PROPTEST_CASES` for more:
//! `PROPTEST_CASES=1000000 cargo nextest run --lib cookie::props` (see README
//! `## Development`).

use super::*;
use crate::config::{CookieKey, SameSite, SecretKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proptest::prelude::*;

fn policy(secure: bool) -> SessionCookie {
    SessionCookie::new(&CookieConfig {
        name: "bff_session".into(),
        domain: None,
        path: "/".into(),
        same_site: SameSite::Strict,
        secure,
        keys: vec![
            CookieKey {
                id: "k2".into(),
                secret: SecretKey::from_bytes([2; 32]),
            },
            CookieKey {
                id: "k1".into(),
                secret: SecretKey::from_bytes([1; 32]),
            },
        ],
    })
}

/// What a browser does with a `Set-Cookie` value (RFC 6265bis §5.6, the name-value part):
/// the cookie's name and value, and the pair it sends back in `Cookie`.
fn browser_parse(set_cookie: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let wsp = |b: &u8| *b == b' ' || *b == b'\t';
    let trim = |s: &[u8]| -> Vec<u8> {
        let start = s.iter().position(|b| !wsp(b)).unwrap_or(s.len());
        let end = s.iter().rposition(|b| !wsp(b)).map_or(start, |e| e + 1);
        s[start..end].to_vec()
    };
    let pair = set_cookie.split(|&b| b == b';').next().unwrap_or_default();
    match pair.iter().position(|&b| b == b'=') {
        None => (Vec::new(), trim(pair)),
        Some(i) => (trim(&pair[..i]), trim(&pair[i + 1..])),
    }
}

/// The `Cookie` pair a browser sends for a cookie (a nameless cookie is its bare value).
fn sent_back(name: &[u8], value: &[u8]) -> Vec<u8> {
    if name.is_empty() {
        value.to_vec()
    } else {
        [name, b"=", value].concat()
    }
}

/// Whether `name` is one of our cookie names, or one of them behind a `__Host-` or
/// `__Secure-` prefix in any letter case (an independent model of [`SessionCookie::owns`]).
fn ours_in_any_spelling(name: &[u8]) -> bool {
    let lower = name.to_ascii_lowercase();
    let rest = [&b"__host-"[..], b"__secure-"]
        .iter()
        .find(|p| lower.starts_with(p))
        .map_or(name, |p| &name[p.len()..]);
    rest == b"bff_session" || rest == b"bff_session_login"
}

fn cookie_name() -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(vec!["", "__Host-", "__host-", "__Secure-", "__SECURE-"]);
    let base = prop_oneof![
        Just("bff_session".to_string()),
        Just("bff_session_login".to_string()),
        Just("BFF_SESSION".to_string()),
        Just("bff_sessionx".to_string()),
        "[a-zA-Z0-9_.-]{0,14}",
    ];
    (prefix, base).prop_map(|(p, b)| format!("{p}{b}"))
}

fn ws() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", " ", "  ", "\t", " \t"]).prop_map(String::from)
}

/// `Set-Cookie` values shaped like the tricks: padded names, prefixes, nameless pairs
/// whose value is itself a `name=value` pair, attributes; and arbitrary bytes.
fn set_cookie() -> impl Strategy<Value = Vec<u8>> {
    let structured = (
        ws(),
        prop::option::of(cookie_name()),
        ws(),
        any::<bool>(),
        prop_oneof![
            "[ -~]{0,20}",
            (ws(), cookie_name(), ws(), "[!-:<-~]{0,8}")
                .prop_map(|(a, n, b, v)| format!("{a}{n}{b}={v}")),
        ],
        prop::sample::select(vec!["", "; Path=/", "; Max-Age=0", ";Secure; HttpOnly"]),
    )
        .prop_map(|(w1, name, w2, eq, value, attrs)| {
            let mut s = w1;
            if let Some(n) = name {
                s.push_str(&n);
            }
            s.push_str(&w2);
            if eq {
                s.push('=');
            }
            s.push_str(&value);
            s.push_str(attrs);
            s.into_bytes()
        });
    prop_oneof![
        4 => structured,
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// A `Cookie` header: pairs with our names, variants and others, joined with `;` and
/// uneven whitespace; or arbitrary bytes.
fn cookie_header() -> impl Strategy<Value = Vec<u8>> {
    let pair = (
        ws(),
        cookie_name(),
        ws(),
        "[!#-+\\--:<-\\[\\]-~]{0,16}",
        ws(),
    )
        .prop_map(|(a, n, b, v, c)| format!("{a}{n}{b}={v}{c}"));
    prop_oneof![
        4 => prop::collection::vec(pair, 0..6).prop_map(|p| p.join(";").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    /// A filtered `Set-Cookie` never sets, as a browser parses it, a cookie that bffgate
    /// would read as its session or login cookie, nor a prefixed variant of one.
    #[test]
    fn set_cookie_filter_lets_none_of_ours_through(sc in set_cookie(), secure in any::<bool>()) {
        let c = policy(secure);
        if !c.is_set_by(&sc) {
            let (name, value) = browser_parse(&sc);
            let sent = sent_back(&name, &value);
            prop_assert_eq!(cookie_value([sent.as_slice()].into_iter(), c.name()), None);
            prop_assert_eq!(cookie_value([sent.as_slice()].into_iter(), c.login_name()), None);
            prop_assert!(!ours_in_any_spelling(&name), "{:?}", String::from_utf8_lossy(&name));
        }
    }

    /// `strip` drops exactly the pairs bffgate owns and keeps every other pair, in order and
    /// byte for byte (trimmed); what is left never holds our cookie.
    #[test]
    fn strip_drops_ours_and_nothing_else(h in cookie_header(), secure in any::<bool>()) {
        let c = policy(secure);
        let expected: Vec<&[u8]> = h
            .split(|&b| b == b';')
            .map(<[u8]>::trim_ascii)
            .filter(|p| !p.is_empty() && !c.owns(split_pair(p).0))
            .collect();
        let stripped = c.strip(&h);
        let kept: Vec<&[u8]> = stripped
            .as_deref()
            .map(|s| s.split(|&b| b == b';').map(<[u8]>::trim_ascii).collect())
            .unwrap_or_default();
        prop_assert_eq!(&kept, &expected);
        if let Some(s) = stripped.as_deref() {
            prop_assert_eq!(c.find([s].into_iter()), None);
            prop_assert_eq!(cookie_value([s].into_iter(), c.login_name()), None);
        }
        // Whatever `find` returns is the value of a pair named exactly like our cookie.
        if let Some(v) = c.find([h.as_slice()].into_iter()) {
            prop_assert!(h
                .split(|&b| b == b';')
                .any(|p| split_pair(p) == (c.name().as_bytes(), v.as_bytes())));
        }
    }

    /// Opening never panics, and only a value this ring sealed, unaltered, opens.
    #[test]
    fn unsealer_opens_only_what_it_sealed(
        garbage in "\\PC{0,120}",
        bytes in prop::collection::vec(any::<u8>(), 0..120),
        flip in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let c = policy(true);
        let cipher = c.cipher();
        let _ = cipher.open(&garbage);
        let encoded = URL_SAFE_NO_PAD.encode(&bytes);
        prop_assert!(cipher.open(&encoded).is_err());
        let id = SessionId::generate();
        let sealed = cipher.seal(&id);
        prop_assert_eq!(cipher.open(&sealed).map(|o| o.id), Ok(id));
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).expect("ours is base64url");
        let i = flip.index(raw.len());
        raw[i] ^= 0x01;
        prop_assert!(cipher.open(&URL_SAFE_NO_PAD.encode(&raw)).is_err());
        raw[i] ^= 0x01;
        let n = cut.index(raw.len());
        prop_assert!(cipher.open(&URL_SAFE_NO_PAD.encode(&raw[..n])).is_err());
    }
}
