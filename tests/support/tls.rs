//! Certificates made on the spot for the TLS tests: a certificate authority, and a server
//! certificate it signs for the names given (DNS names or IP addresses).

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

pub struct Pki {
    /// The authority's certificate, to trust.
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl Pki {
    pub fn new(server_names: &[&str]) -> Pki {
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("a CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().expect("a server key");
        let names: Vec<String> = server_names.iter().map(|n| n.to_string()).collect();
        let server = CertificateParams::new(names).expect("server parameters");
        let server_cert = server.signed_by(&server_key, &issuer).expect("a server certificate");
        Pki { ca_pem: ca_cert.pem(), server_cert_pem: server_cert.pem(), server_key_pem: server_key.serialize_pem() }
    }

    /// Write the authority's certificate to `dir/name` and return the path.
    pub fn write_ca(&self, dir: &std::path::Path, name: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, &self.ca_pem).expect("write the CA certificate");
        path.to_string_lossy().into_owned()
    }
}
