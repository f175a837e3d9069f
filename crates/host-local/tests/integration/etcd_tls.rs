//! Certificates for the TLS tests, made by the test (rcgen): a CA, a
//! server certificate for 127.0.0.1 signed by it, a client certificate
//! signed by it, and an unrelated CA with its own client certificate
//! (neither trusted by the servers nor trusting them).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

use test_support::etcd::ServerTls;

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub server: ServerTls,
    /// A CA that signed nothing the servers present.
    pub other_ca: PathBuf,
    /// A client certificate and key signed by `other_ca`.
    pub other_cert: PathBuf,
    pub other_key: PathBuf,
}

fn write(dir: &Path, name: &str, pem: String) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pem).expect("write PEM");
    p
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().expect("CA key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let pem = p.self_signed(&key).expect("self-signed CA").pem();
    (p, key, pem)
}

fn leaf(
    issuer: &Issuer<'_, &KeyPair>,
    cn: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut p = CertificateParams::new(sans).expect("leaf params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![usage];
    let cert = p.signed_by(&key, issuer).expect("sign leaf");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("etcd-test-pki-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let (ca_params, ca_key, ca_pem) = ca("etcd-test CA");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let (srv, srv_key) = leaf(
            &issuer,
            "etcd-test server",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (cli, cli_key) = leaf(
            &issuer,
            "etcd-test client",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (o_params, o_key, o_pem) = ca("etcd-test other CA");
        let o_issuer = Issuer::from_params(&o_params, &o_key);
        let (ocli, ocli_key) = leaf(
            &o_issuer,
            "etcd-test stranger",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Pki {
            server: ServerTls {
                ca: write(d, "ca.pem", ca_pem),
                cert: write(d, "server.pem", srv),
                key: write(d, "server-key.pem", srv_key),
                client_cert: write(d, "client.pem", cli),
                client_key: write(d, "client-key.pem", cli_key),
            },
            other_ca: write(d, "other-ca.pem", o_pem),
            other_cert: write(d, "other-client.pem", ocli),
            other_key: write(d, "other-client-key.pem", ocli_key),
            dir,
        }
    }
}
