//! Path rules shared by the config checker and the router: segment-aligned prefixes, clean
//! configured paths, and the normalisation a lenient upstream would apply, so that what is
//! routed is what the upstream will act on.

/// Why a request path is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Dot-segments (plain or percent-encoded), or a NUL.
    DotSegment,
    /// Decoding or normalising the path would route it elsewhere.
    Ambiguous,
}

/// Whether `prefix` covers `path` on whole segments (`/api` covers `/api` and `/api/x`,
/// not `/apix`; `/` covers everything).
pub fn segment_prefix(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
}

/// Whether a configured path is plain: absolute, without `//`, dot-segments,
/// percent-escapes, backslashes, query or fragment.
pub fn is_clean_path(s: &str) -> bool {
    s.starts_with('/')
        && !s.contains(['%', '?', '#', '\\'])
        && !s[1..]
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
}

/// Whether a request path could mean something else once decoded or normalised
/// (percent-escapes, backslashes, dot- or empty segments). Plain paths skip [`normalise`].
pub fn is_suspicious(raw: &str) -> bool {
    raw.contains(['%', '\\']) || raw.contains("/.") || raw.contains("//")
}

/// The path as a lenient upstream resolves it: percent-decoded, `\` read as `/`, empty
/// segments dropped.
///
/// # Errors
/// [`PathError::DotSegment`] for a dot-segment in any spelling, or a NUL.
pub fn normalise(raw: &str) -> Result<String, PathError> {
    let decoded = percent_encoding::percent_decode_str(raw).collect::<Vec<u8>>();
    if decoded.contains(&0) {
        return Err(PathError::DotSegment);
    }
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut out = String::with_capacity(decoded.len());
    for seg in decoded.split('/') {
        match seg {
            "" => {}
            "." | ".." => return Err(PathError::DotSegment),
            s => {
                out.push('/');
                out.push_str(s);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_prefix_is_whole_segments() {
        assert!(segment_prefix("/api", "/api"));
        assert!(segment_prefix("/api", "/api/x"));
        assert!(!segment_prefix("/api", "/apix"));
        assert!(segment_prefix("/", "/anything"));
    }

    #[test]
    fn normalise_refuses_dot_segments_in_any_spelling() {
        assert_eq!(normalise("/a/%2e%2E/b"), Err(PathError::DotSegment));
        assert_eq!(normalise("/a/./b"), Err(PathError::DotSegment));
        assert_eq!(normalise("/a%00"), Err(PathError::DotSegment));
        assert_eq!(normalise("//a\\b").as_deref(), Ok("/a/b"));
        assert_eq!(normalise("/").as_deref(), Ok("/"));
    }
}
