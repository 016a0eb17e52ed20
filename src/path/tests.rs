use super::*;
use proptest::prelude::*;

#[test]
fn segment_prefix_is_whole_segments() {
    assert!(segment_prefix("/api", "/api"));
    assert!(segment_prefix("/api", "/api/x"));
    assert!(!segment_prefix("/api", "/apix"));
    assert!(!segment_prefix("/api", "/api;x/y"));
    assert!(segment_prefix("/", "/anything"));
}

#[test]
fn normalise_refuses_dot_segments_in_any_spelling() {
    for raw in [
        "/a/%2e%2E/b",
        "/a/./b",
        "/a%00",
        "/pub/..;/api",
        "/pub/..;x=1/api",
        "/pub/.;x/api",
        "/pub/%2e%2e;/api",
        "/pub/%2e./api",
        "/pub/.%2e/api",
        "/pub/%2e%2e%3b/api",
        "/pub\\..\\api",
        "/pub/..",
        "/..;",
    ] {
        assert_eq!(normalise(raw), Err(PathError::DotSegment), "{raw}");
        assert_eq!(
            normalise_params_first(raw),
            Err(PathError::DotSegment),
            "{raw}"
        );
    }
    assert_eq!(normalise("//a\\b").as_deref(), Ok("/a/b"));
    assert_eq!(normalise("/").as_deref(), Ok("/"));
}

#[test]
fn params_are_removed_per_segment() {
    assert_eq!(strip_params("/api;x=1/secret"), "/api/secret");
    assert_eq!(strip_params("/a;b;c/d;e/"), "/a/d/");
    assert_eq!(strip_params("/plain"), "/plain");
    assert_eq!(normalise("/api;x=1/secret;y").as_deref(), Ok("/api/secret"));
    assert_eq!(normalise("/api%3bx/secret").as_deref(), Ok("/api/secret"));
    assert_eq!(
        normalise_params_first("/api%3bx/secret").as_deref(),
        Ok("/api;x/secret")
    );
    assert_eq!(normalise("/;x/api").as_deref(), Ok("/api"));
    assert!(has_params("/a;b") && has_params("/a%3Bb") && !has_params("/a/b"));
}

#[test]
fn double_encoded_separators_and_dots_are_ambiguous() {
    for raw in [
        "/pub/%252e%252e/api",
        "/pub%252f..%252fapi",
        "/a%255cb",
        "/a%253bb",
    ] {
        assert_eq!(normalise(raw), Err(PathError::Ambiguous), "{raw}");
    }
    assert_eq!(normalise("/a/100%25").as_deref(), Ok("/a/100%"));
}

#[test]
fn configured_paths_have_no_params() {
    assert!(is_clean_path("/api/v1"));
    assert!(!is_clean_path("/api;v=1"));
}

/// Path-like text: the characters that change how a path is read, and a few plain ones.
pub(crate) fn path_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/"),
        Just("."),
        Just(".."),
        Just(";"),
        Just(";x=1"),
        Just("\\"),
        Just("%2e"),
        Just("%2E"),
        Just("%2f"),
        Just("%5c"),
        Just("%3b"),
        Just("%25"),
        Just("%00"),
        Just("%"),
        Just("%c3%a9"),
        Just("api"),
        Just("pub"),
        Just("secret"),
        Just("a"),
        Just("x"),
    ];
    proptest::collection::vec(piece, 0..14).prop_map(|v| format!("/{}", v.concat()))
}

/// Paths made of segments: names the routes use or dot-segments in many spellings, with or
/// without `;` parameters, joined by `/` or what some upstream reads as one.
pub(crate) fn segmented_path() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("api"),
        Just("pub"),
        Just("secret"),
        Just("x"),
        Just("."),
        Just(".."),
        Just("%2e"),
        Just("%2e%2e"),
        Just(".%2E"),
        Just("%2e."),
        Just("%252e%252e"),
        Just(""),
        Just("%61pi"),
        Just("p%75b"),
        Just("a%2fb"),
    ];
    let params = prop_oneof![
        Just(""),
        Just(""),
        Just(";"),
        Just(";x=1"),
        Just("%3b"),
        Just("%3Bx"),
        Just(";%2f..")
    ];
    let sep = prop_oneof![
        Just("/"),
        Just("/"),
        Just("/"),
        Just("\\"),
        Just("%2f"),
        Just("%5C"),
        Just("//")
    ];
    proptest::collection::vec((sep, name, params), 1..7).prop_map(|segs| {
        let mut out = String::from("/");
        for (i, (sep, name, params)) in segs.into_iter().enumerate() {
            if i > 0 {
                out.push_str(sep);
            }
            out.push_str(name);
            out.push_str(params);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Neither reading panics on any text, and a path it accepts is absolute, has no dot-
    /// or empty segments, and is stable when read again.
    #[test]
    fn normalise_never_panics(raw in any::<String>(), like in path_like()) {
        for input in [raw.as_str(), like.as_str()] {
            for n in [normalise(input), normalise_params_first(input)].into_iter().flatten() {
                prop_assert!(n.starts_with('/'));
                prop_assert!(n == "/" || !n[1..].split('/').any(|s| s.is_empty() || is_dot(s)));
            }
            let _ = strip_params(input);
            let _ = is_suspicious(input);
        }
    }
}
