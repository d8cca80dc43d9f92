//! Certificates made in the test, and TLS configs built from them.
#![allow(dead_code)]

use std::sync::Arc;

use torsion::tls::{self, ClientConfig, ServerConfig};

/// A CA and a server certificate it signed, as PEM.
pub struct Certs {
    pub ca_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
}

/// A fresh CA, and a certificate it signed for `names` (DNS names or IPs).
pub fn certs(names: &[&str]) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "torsion test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().copied().unwrap_or("torsion test"),
    );
    let cert = params.signed_by(&key, &issuer).unwrap();
    Certs {
        ca_pem: ca.pem(),
        chain_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

impl Certs {
    pub fn server(&self) -> Arc<ServerConfig> {
        Arc::new(
            tls::server_config_from_pem(self.chain_pem.as_bytes(), self.key_pem.as_bytes())
                .unwrap(),
        )
    }

    pub fn server_alpn(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let mut c = tls::server_config_from_pem(self.chain_pem.as_bytes(), self.key_pem.as_bytes())
            .unwrap();
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    }

    pub fn client(&self) -> Arc<ClientConfig> {
        Arc::new(tls::client_config_with_ca(self.ca_pem.as_bytes()).unwrap())
    }

    pub fn client_alpn(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut c = tls::client_config_with_ca(self.ca_pem.as_bytes()).unwrap();
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    }
}

/// The TLS transport for behaviour suites: listens with `factory` on a fresh
/// loopback port, over TLS with a certificate made for the test.
pub fn listen<F: torsion::Factory>(
    reactor: &mut torsion::Reactor,
    factory: F,
) -> std::net::SocketAddr {
    let c = shared_certs();
    reactor
        .listen_tls("127.0.0.1:0".parse().unwrap(), c.server(), factory)
        .unwrap()
        .local_addr()
}

/// Connects `factory` over TLS to a [`listen`]ed address, verifying the
/// certificate for "localhost".
pub fn connect<F: torsion::ClientFactory>(
    reactor: &mut torsion::Reactor,
    addr: std::net::SocketAddr,
    factory: F,
) -> torsion::Connector {
    let c = shared_certs();
    reactor.connect_tls(
        addr,
        tls::server_name("localhost").unwrap(),
        c.client(),
        factory,
        std::time::Duration::from_secs(30),
    )
}

thread_local! {
    static CERTS: std::rc::Rc<Certs> = std::rc::Rc::new(certs(&["localhost"]));
}

/// One certificate per test thread (generating keys is the slow part).
pub fn shared_certs() -> std::rc::Rc<Certs> {
    CERTS.with(|c| c.clone())
}
