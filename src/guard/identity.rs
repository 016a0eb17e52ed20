//! A route's identity policy applied to a session: the claims it requires (else
//! `403 forbidden`) and the identity headers the upstream gets, built from the session's
//! own claims only, never from what the client sent.

use crate::config::RouteIdentity;
use crate::http::ApiError;
use http::{HeaderName, HeaderValue};
use serde_json::Value;

/// A claim of the session other than `sub` (which callers take from the session itself).
fn claim<'a>(name: &str, claims: &'a Value) -> Option<&'a Value> {
    claims.get(name)
}

/// The text of a scalar claim value.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether the session's claim `name` holds one of `accepted` (an array claim: one of its
/// elements).
fn holds(name: &str, accepted: &[String], sub: &str, claims: &Value) -> bool {
    if name == "sub" {
        return accepted.iter().any(|a| a == sub);
    }
    match claim(name, claims) {
        Some(Value::Array(items)) => items.iter().filter_map(text).any(|t| accepted.contains(&t)),
        Some(v) => text(v).is_some_and(|t| accepted.contains(&t)),
        None => false,
    }
}

/// Applies `policy` to the session of user `sub` (`None`: an anonymous request on an
/// `optional` route) with `claims`: the identity headers to set upstream.
///
/// # Errors
/// [`ApiError::Forbidden`] when a required claim is missing or holds no accepted value;
/// [`ApiError::NoSession`] when the route requires claims and there is no session.
pub fn apply(
    policy: &RouteIdentity,
    sub: Option<&str>,
    claims: &Value,
) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
    let Some(sub) = sub else {
        return if policy.require.is_empty() {
            Ok(Vec::new())
        } else {
            Err(ApiError::NoSession)
        };
    };
    if !policy
        .require
        .iter()
        .all(|(name, accepted)| holds(name, accepted, sub, claims))
    {
        return Err(ApiError::Forbidden);
    }
    let mut headers = Vec::with_capacity(policy.headers.len());
    for (header, name) in &policy.headers {
        let value = if name == "sub" {
            Some(sub.to_string())
        } else {
            match claim(name, claims) {
                Some(Value::Array(items)) => {
                    Some(items.iter().filter_map(text).collect::<Vec<_>>().join(","))
                }
                Some(v) => text(v),
                None => None,
            }
        };
        // A claim that cannot be a header value (control characters) is left out.
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.push((header.clone(), v));
        }
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(headers: &[(&'static str, &str)], require: &[(&str, &[&str])]) -> RouteIdentity {
        RouteIdentity {
            headers: headers
                .iter()
                .map(|(h, c)| (HeaderName::from_static(h), c.to_string()))
                .collect(),
            require: require
                .iter()
                .map(|(c, v)| (c.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    #[test]
    fn requirements_and_headers_come_from_the_session() {
        let claims = json!({"email": "ada@example.com", "groups": ["dev", "admin"], "level": 3});
        let p = policy(
            &[
                ("x-user-sub", "sub"),
                ("x-user-email", "email"),
                ("x-user-groups", "groups"),
            ],
            &[("groups", &["admin"]), ("level", &["3", "4"])],
        );
        let h = apply(&p, Some("u1"), &claims).expect("allowed");
        let got: Vec<(String, String)> = h
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("x-user-sub".into(), "u1".into()),
                ("x-user-email".into(), "ada@example.com".into()),
                ("x-user-groups".into(), "dev,admin".into())
            ]
        );
        let ops = policy(&[], &[("groups", &["ops"])]);
        assert_eq!(apply(&ops, Some("u1"), &claims), Err(ApiError::Forbidden));
        let missing = policy(&[], &[("tenant", &["a"])]);
        assert_eq!(
            apply(&missing, Some("u1"), &claims),
            Err(ApiError::Forbidden)
        );
        assert_eq!(apply(&ops, None, &Value::Null), Err(ApiError::NoSession));
        assert_eq!(
            apply(&policy(&[("x-user-sub", "sub")], &[]), None, &Value::Null),
            Ok(vec![])
        );
        let by_sub = policy(&[], &[("sub", &["u1"])]);
        assert!(apply(&by_sub, Some("u1"), &claims).is_ok());
        assert_eq!(
            apply(&by_sub, Some("u2"), &claims),
            Err(ApiError::Forbidden)
        );
    }
}
