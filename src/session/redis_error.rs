//! Why a Redis connection or command failed, in words an operator can act on: the cause
//! class — DNS, refused, timeout, TLS (with the certificate error), authentication, dropped
//! connection — and the underlying errors' text. Nothing from a command (keys, values)
//! and no credentials: user information in any URL-like text is masked.

/// What went wrong, as the cause class and the error text: `refused: Connection refused
/// (os error 111)`, `TLS: invalid peer certificate: UnknownIssuer`, `authentication:
/// WRONGPASS …`. A server's refusal of a command (not a connection failure) is its kind.
pub(super) fn describe(e: &redis::RedisError) -> String {
    let text = redact(&chain(e));
    match class(e, &text.to_ascii_lowercase()) {
        Some(class) => format!("{class}: {text}"),
        None => format!("{:?}", e.kind()),
    }
}

/// Whether the failure is the connection's (as opposed to a command the server refused):
/// such failures are logged when they start and when they end.
pub(super) fn is_connection_failure(e: &redis::RedisError) -> bool {
    class(e, &chain(e).to_ascii_lowercase()).is_some()
}

/// The cause class of a connection failure, or `None` for a command's refusal.
fn class(e: &redis::RedisError, lower: &str) -> Option<&'static str> {
    use redis::ErrorKind;
    let io_kind = io_kind(e);
    let auth_code = e
        .code()
        .is_some_and(|c| matches!(c, "WRONGPASS" | "NOAUTH" | "NOPERM"));
    Some(
        if e.kind() == ErrorKind::AuthenticationFailed || auth_code {
            "authentication"
        } else if ["certificate", "tls", "handshake", "ssl"]
            .iter()
            .any(|w| lower.contains(w))
        {
            "TLS"
        } else if [
            "lookup address",
            "name or service not known",
            "nodename nor servname",
            "no address associated",
            "name resolution",
        ]
        .iter()
        .any(|w| lower.contains(w))
        {
            "DNS"
        } else if e.is_connection_refusal()
            || io_kind == Some(std::io::ErrorKind::ConnectionRefused)
        {
            "refused"
        } else if e.is_timeout() {
            "timeout"
        } else if e.is_connection_dropped() {
            "connection dropped"
        } else if e.is_io_error() {
            "connection failed"
        } else {
            return None;
        },
    )
}

/// The kind of the I/O error beneath `e`, if any.
fn io_kind(e: &redis::RedisError) -> Option<std::io::ErrorKind> {
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = cause.source();
    }
    None
}

/// The error's text followed by each underlying error's that adds something.
fn chain(e: &redis::RedisError) -> String {
    let mut out = vec![e.to_string()];
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.iter().any(|o| o.contains(&text)) {
            out.push(text);
        }
        next = cause.source();
    }
    out.join(": ")
}

/// `text` with the user information of any `scheme://user:pass@host` masked.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            out.push_str("***");
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn io_error(kind: io::ErrorKind, text: &str) -> redis::RedisError {
        redis::RedisError::from(io::Error::new(kind, text.to_string()))
    }

    #[test]
    fn connection_failures_are_named_by_cause() {
        let cases = [
            (
                io_error(
                    io::ErrorKind::ConnectionRefused,
                    "Connection refused (os error 111)",
                ),
                "refused: ",
            ),
            (
                io_error(
                    io::ErrorKind::Other,
                    "failed to lookup address information: Name or service not known",
                ),
                "DNS: ",
            ),
            (
                io_error(
                    io::ErrorKind::InvalidData,
                    "invalid peer certificate: UnknownIssuer",
                ),
                "TLS: invalid peer certificate: UnknownIssuer",
            ),
            (io_error(io::ErrorKind::TimedOut, "timed out"), "timeout: "),
            (
                redis::RedisError::from((
                    redis::ErrorKind::AuthenticationFailed,
                    "Password authentication failed",
                )),
                "authentication: ",
            ),
        ];
        for (e, want) in cases {
            let got = describe(&e);
            assert!(
                got.starts_with(want),
                "{got:?} does not start with {want:?}"
            );
            assert!(is_connection_failure(&e), "{got}");
        }
    }

    #[test]
    fn credentials_in_urls_are_masked() {
        assert_eq!(
            redact("cannot reach redis://user:s3cret@db:6379/0 now"),
            "cannot reach redis://***@db:6379/0 now"
        );
        assert_eq!(redact("rediss://db:6379 and x"), "rediss://db:6379 and x");
    }
}
