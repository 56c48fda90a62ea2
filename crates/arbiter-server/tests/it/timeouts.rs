//! A request that does not complete in time: a decision is denied, never a 5xx; others get a 503.

use crate::support::{Bundle, TestServer};
use arbiter_server::{Role, ServerConfig};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends headers promising a body that never arrives, and returns what the server answers.
async fn stalled_request(server: &TestServer, path: &str, key: &str) -> String {
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"subject\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut response))
        .await
        .expect("the server must answer before the client gives up")
        .unwrap();
    String::from_utf8_lossy(&response[..read]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_decision_is_denied_and_a_stalled_change_is_a_503() {
    let config = ServerConfig {
        request_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(Bundle::demo(), config).await;
    let gateway = server.key(Role::EnforcementPoint).to_owned();
    let admin = server.key(Role::Admin).to_owned();

    let response = stalled_request(&server, "/access/v1/evaluation", &gateway).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"decision\":false"), "{response}");
    assert!(response.contains("time limit"), "{response}");

    let response = stalled_request(&server, "/admin/v1/identities", &admin).await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("application/problem+json"), "{response}");
    server.stop().await;
}
