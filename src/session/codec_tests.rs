//! The codec's key-ring behaviour: which records open under which ring, and what sealing
//! writes.

use super::*;

fn codec(keys: &[(&str, u8)]) -> Codec {
    Codec::new(&crate::session::test_support::ring(keys), "t:")
}

#[test]
fn sealed_bytes_open_only_under_their_storage_key() {
    let c = codec(&[("k1", 7)]);
    let blob = c.seal_bytes("s1", b"plain").expect("seal");
    assert_eq!(blob.len(), 2 + 2 + NONCE_LEN + b"plain".len() + TAG_LEN);
    let opened = c.open_bytes("s1", &blob).expect("opens");
    assert_eq!(opened.plain, b"plain");
    assert!(opened.current);
    assert!(c.open_bytes("s2", &blob).is_none());
    assert_ne!(c.seal_bytes("s1", b"plain").expect("seal"), blob);
}

#[test]
fn a_record_under_an_older_key_opens_and_sealing_uses_the_current_key() {
    let old = codec(&[("k1", 1)]);
    let rotated = codec(&[("k2", 2), ("k1", 1)]);
    let blob = old.seal_bytes("s", b"x").expect("seal");
    assert_eq!(key_id_of(&blob), Some("k1"));
    let opened = rotated
        .open_bytes("s", &blob)
        .expect("the old key still opens");
    assert_eq!(opened.plain, b"x");
    assert!(!opened.current, "an old-key record is to be re-sealed");
    let resealed = rotated.seal_bytes("s", &opened.plain).expect("seal");
    assert_eq!(key_id_of(&resealed), Some("k2"));
    assert!(rotated.open_bytes("s", &resealed).expect("opens").current);
    // Once k1 is removed, its records no longer open; k2's do.
    let after = codec(&[("k2", 2)]);
    assert!(after.open_bytes("s", &blob).is_none());
    assert!(after.open_bytes("s", &resealed).is_some());
}

#[test]
fn an_unknown_key_id_is_refused() {
    let blob = codec(&[("k3", 3)]).seal_bytes("s", b"x").expect("seal");
    assert!(codec(&[("k2", 2), ("k1", 1)])
        .open_bytes("s", &blob)
        .is_none());
    // Same id, other secret: refused too.
    assert!(codec(&[("k3", 4)]).open_bytes("s", &blob).is_none());
}

#[test]
fn a_changed_header_is_refused() {
    let ring = codec(&[("k2", 2), ("k1", 1)]);
    let blob = ring.seal_bytes("s", b"x").expect("seal");
    // Point the header at the other key of the ring, then at the same key under another
    // version byte: neither opens.
    let mut other = blob.clone();
    other[3] = b'1';
    assert_eq!(key_id_of(&other), Some("k1"));
    assert!(ring.open_bytes("s", &other).is_none());
    let mut version = blob.clone();
    version[0] ^= 1;
    assert!(ring.open_bytes("s", &version).is_none());
    let mut body = blob;
    let last = body.len() - 1;
    body[last] ^= 1;
    assert!(ring.open_bytes("s", &body).is_none());
}

#[test]
fn a_record_from_before_key_rings_opens_as_an_old_key_record() {
    // The earlier format: nonce ‖ AES-GCM(plain, aad = storage key), no header.
    let k1 = crate::session::test_support::ring(&[("default", 9)]).remove(0);
    let cipher = Aes256Gcm::new(k1.secret.expose().into());
    let nonce = [5u8; NONCE_LEN];
    let mut legacy = nonce.to_vec();
    legacy.extend(
        cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: b"old",
                    aad: b"s",
                },
            )
            .expect("seal"),
    );
    let ring = codec(&[("new", 3), ("default", 9)]);
    let opened = ring.open_bytes("s", &legacy).expect("opens");
    assert_eq!(opened.plain, b"old");
    assert!(!opened.current);
    assert!(ring.open_bytes("other", &legacy).is_none());
}

#[test]
fn names_written_under_an_older_key_are_still_looked_up() {
    let old = codec(&[("k1", 1)]);
    let rotated = codec(&[("k2", 2), ("k1", 1)]);
    let names = rotated.index_names("sub", "alice");
    assert_eq!(names.len(), 2);
    assert_eq!(names[0], rotated.index_name("sub", "alice"));
    assert_eq!(names[1], old.index_name("sub", "alice"));
    assert_ne!(names[0], names[1]);
    // Storage keys do not depend on the keys.
    let id = SessionId::generate();
    assert_eq!(old.storage_key(&id), rotated.storage_key(&id));
}

#[test]
fn the_header_is_read_without_the_key() {
    assert_eq!(key_id_of(&[VERSION, 2, b'a', b'b', 0, 0]), Some("ab"));
    assert_eq!(key_id_of(&[VERSION, 0]), None);
    assert_eq!(key_id_of(&[VERSION, 33]), None);
    assert_eq!(key_id_of(&[VERSION, 3, b'a']), None);
    assert_eq!(key_id_of(&[0x00, 1, b'a']), None);
}

#[test]
fn a_storage_key_and_its_hash_name_each_other() {
    let c = Codec::new(&crate::session::test_support::ring(&[("k1", 7)]), "t{x}:");
    let id = SessionId::generate();
    let key = c.storage_key(&id);
    assert_eq!(hash_of_key(&key), Some(key_hash(&id)));
    assert_eq!(c.storage_key_of_hash(&key_hash(&id)), key);
    assert_eq!(hash_of_key(&c.session_key(&id, "lock")), None);
}
