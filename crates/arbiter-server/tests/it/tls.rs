//! TLS with rustls, and client certificates when a client CA is configured.

use crate::support::Bundle;
use arbiter_server::{metrics_handle, AppState, Bootstrap, ServerConfig, TlsConfig};
use arbiter_store::SqliteStore;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_cert: String,
    server_key: String,
    client_cert: CertificateDer<'static>,
    client_key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = CertificateParams::new(vec!["gateway.example".to_owned()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client_cert.der().clone(),
        client_key: PrivateKeyDer::try_from(client_key.serialize_der()).unwrap(),
    }
}

async fn start(dir: &Path, pki: &Pki, require_client_cert: bool) -> std::net::SocketAddr {
    std::fs::write(dir.join("server.pem"), &pki.server_cert).unwrap();
    std::fs::write(dir.join("server.key"), &pki.server_key).unwrap();
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    let tls = TlsConfig {
        cert_chain: dir.join("server.pem"),
        private_key: dir.join("server.key"),
        client_ca: require_client_cert.then(|| dir.join("ca.pem")),
    };
    let bundle = Bundle::demo();
    let bootstrap = Bootstrap {
        policies: vec![arbiter_engine::PolicySource {
            name: "p".into(),
            text: bundle.policies[0].1.clone(),
        }],
        ..Bootstrap::default()
    };
    let (state, _) = AppState::open(
        Arc::new(SqliteStore::open_in_memory().unwrap()),
        None,
        bootstrap,
        ServerConfig::default(),
        metrics_handle(),
        0,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        arbiter_server::serve_tls(listener, &tls, Arc::new(state), std::future::pending())
            .await
            .unwrap();
    });
    address
}

async fn get_health(
    address: std::net::SocketAddr,
    pki: &Pki,
    with_client_cert: bool,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_client_cert {
        builder
            .with_client_auth_cert(vec![pki.client_cert.clone()], pki.client_key.clone_key())
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|err| err.to_string())?;
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|err| err.to_string())?;
    let mut response = String::new();
    tls.read_to_string(&mut response)
        .await
        .map_err(|err| err.to_string())?;
    Ok(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_over_tls_and_can_require_client_certificates() {
    let dir = std::env::temp_dir().join(format!("arbiter-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pki = pki();

    let plain = start(&dir, &pki, false).await;
    let response = get_health(plain, &pki, false).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let mutual = start(&dir, &pki, true).await;
    let response = get_health(mutual, &pki, true).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // Without a client certificate the handshake (or the first read) fails: no HTTP answer.
    let refused = get_health(mutual, &pki, false).await;
    assert!(
        refused.is_err() || !refused.as_ref().unwrap().contains("200"),
        "{refused:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_certificate_files_are_named() {
    let tls = TlsConfig {
        cert_chain: "/nonexistent/server.pem".into(),
        private_key: "/nonexistent/server.key".into(),
        client_ca: None,
    };
    let err = tls.acceptor().map(|_| ()).unwrap_err();
    assert!(err.contains("/nonexistent/server.pem"), "{err}");
}
