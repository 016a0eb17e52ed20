//! Path rules shared by the config checker and the router: segment-aligned prefixes, clean
//! configured paths, and the readings a lenient upstream may give a request path (percent-
//! decoding, `;` path parameters, `\`, dot- and empty segments), so that what is routed is
//! what the upstream will act on.

use std::borrow::Cow;

/// Why a request path is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A dot-segment in any spelling (plain, percent-encoded once or twice, with or without
    /// `;` parameters), or a NUL.
    DotSegment,
    /// Decoding or normalising the path would route it elsewhere.
    Ambiguous,
    /// A `;` path parameter while `server.path_params` is `refuse`.
    Params,
}

/// How `;` path parameters (`/a;x=1/b`) are treated: `server.path_params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathParams {
    /// Route on the path without them, as Tomcat, Jetty and Spring read it, and forward the
    /// path unchanged (the upstream still gets its matrix parameters).
    #[default]
    StripForRouting,
    /// Refuse any path with a `;`, literal or percent-encoded.
    Refuse,
}

/// Whether `prefix` covers `path` on whole segments (`/api` covers `/api` and `/api/x`,
/// not `/apix`; `/` covers everything).
pub fn segment_prefix(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
}

/// Whether a configured path is plain: absolute, without `//`, dot-segments,
/// percent-escapes, backslashes, `;`, query or fragment.
pub fn is_clean_path(s: &str) -> bool {
    s.starts_with('/')
        && !s.contains(['%', '?', '#', '\\', ';'])
        && !s[1..]
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
}

/// Whether a request path could mean something else once decoded or normalised
/// (percent-escapes, backslashes, `;` parameters, dot- or empty segments). Plain paths skip
/// [`normalise`].
pub fn is_suspicious(raw: &str) -> bool {
    raw.contains(['%', '\\', ';']) || raw.contains("/.") || raw.contains("//")
}

/// Whether the path carries a `;`, literal or percent-encoded.
pub fn has_params(raw: &str) -> bool {
    raw.contains(';') || raw.contains("%3b") || raw.contains("%3B")
}

/// The path with each segment's `;` parameters removed (`/a;x=1/b;y` → `/a/b`): the key a
/// request is routed on. Only a literal `;` starts parameters here.
pub fn strip_params(raw: &str) -> Cow<'_, str> {
    if !raw.contains(';') {
        return Cow::Borrowed(raw);
    }
    let stripped: Vec<&str> = raw
        .split('/')
        .map(|seg| seg.split(';').next().unwrap_or(seg))
        .collect();
    Cow::Owned(stripped.join("/"))
}

/// The path as a lenient upstream that decodes first resolves it: percent-decoded once,
/// `\` read as `/`, each segment's `;` parameters removed, empty segments dropped.
///
/// # Errors
/// [`PathError::DotSegment`] for a dot-segment in any spelling, or a NUL;
/// [`PathError::Ambiguous`] when the decoded path still holds an escaped `.`, `/`, `\`,
/// `;` or `%` (a second decoding would change it).
pub fn normalise(raw: &str) -> Result<String, PathError> {
    resolve(raw, true)
}

/// The path as an upstream that removes `;` parameters before decoding (Tomcat) resolves
/// it: `raw` with [`strip_params`] applied, then decoded, and a decoded `;` kept literally.
///
/// # Errors
/// As [`normalise`].
pub fn normalise_params_first(raw: &str) -> Result<String, PathError> {
    resolve(&strip_params(raw), false)
}

fn resolve(raw: &str, strip_decoded_params: bool) -> Result<String, PathError> {
    let decoded = percent_encoding::percent_decode_str(raw).collect::<Vec<u8>>();
    if decoded.contains(&0) {
        return Err(PathError::DotSegment);
    }
    if escapes_meaning(&decoded) {
        return Err(PathError::Ambiguous);
    }
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut out = String::with_capacity(decoded.len());
    for seg in decoded.split('/') {
        let name = seg.split(';').next().unwrap_or(seg);
        if is_dot(seg) || is_dot(name) {
            return Err(PathError::DotSegment);
        }
        let kept = if strip_decoded_params { name } else { seg };
        if !kept.is_empty() {
            out.push('/');
            out.push_str(kept);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

fn is_dot(seg: &str) -> bool {
    seg == "." || seg == ".."
}

/// Whether once-decoded bytes still hold `%XX` naming `.`, `/`, `\`, `;` or `%`: a path
/// that a second decoding would re-segment or turn into a dot-segment.
fn escapes_meaning(decoded: &[u8]) -> bool {
    decoded.windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1].to_ascii_lowercase(), w[2].to_ascii_lowercase()),
                (b'2', b'e' | b'f' | b'5') | (b'5', b'c') | (b'3', b'b')
            )
    })
}

#[cfg(test)]
pub(crate) mod tests;
