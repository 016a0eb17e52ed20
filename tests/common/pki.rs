//! A throwaway PKI for TLS tests: a CA and a server certificate it signed for `localhost`
//! and `127.0.0.1`, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM files of a test CA and of a server certificate it signed.
pub struct Pki {
    /// The CA certificate (what clients trust).
    pub ca_pem: String,
    /// `DIR/ca.pem`.
    pub ca_file: PathBuf,
    /// `DIR/server.pem`: the server certificate (leaf only).
    pub cert_file: PathBuf,
    /// `DIR/server.key`: its PKCS#8 private key.
    pub key_file: PathBuf,
}

/// Generates a CA and a server certificate for `localhost` and `127.0.0.1` into `dir`.
pub fn generate(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bffgate test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let server_cert = params
        .signed_by(&server_key, &issuer)
        .expect("sign server certificate");

    let pki = Pki {
        ca_pem: ca_cert.pem(),
        ca_file: dir.join("ca.pem"),
        cert_file: dir.join("server.pem"),
        key_file: dir.join("server.key"),
    };
    std::fs::write(&pki.ca_file, &pki.ca_pem).expect("write ca.pem");
    std::fs::write(&pki.cert_file, server_cert.pem()).expect("write server.pem");
    std::fs::write(&pki.key_file, server_key.serialize_pem()).expect("write server.key");
    pki
}

/// `yaml` (a gateway template) with a second, TLS listener on `127.0.0.1:port` serving
/// `pki`'s certificate, beside the plain `{LISTEN}` one the harness checks health on.
pub fn with_tls_listener(yaml: &str, port: u16, pki: &Pki) -> String {
    let plain = "listen:\n  - addr: \"{LISTEN}\"\n";
    assert!(yaml.contains(plain));
    yaml.replacen(
        plain,
        &format!(
            "{plain}  - addr: \"127.0.0.1:{port}\"\n    tls: {{ cert: \"{}\", key: \"{}\" }}\n",
            pki.cert_file.display(),
            pki.key_file.display()
        ),
        1,
    )
}
