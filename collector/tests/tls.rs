//! TLS on both OTLP listeners with a certificate made by the test.

mod common;

use std::sync::Arc;

use common::Server;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn request() -> ExportTraceServiceRequest {
    testkit::otlp::spans_request(
        vec![],
        vec![Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "tls".into(),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_100_000_000,
            ..Default::default()
        }],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_over_tls_on_both_listeners() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = cert.cert.pem();
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, &cert_pem).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let server = Server::start_with(|_, c| {
        c.tls = Some(listeners::tls::TlsFiles {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        })
    })
    .await;

    // gRPC over TLS.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&cert_pem))
        .domain_name("localhost");
    let channel =
        tonic::transport::Channel::from_shared(format!("https://{}", server.collector.grpc_addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
    TraceServiceClient::new(channel)
        .export(request())
        .await
        .unwrap();

    // HTTP/1.1 over TLS, by hand.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.collector.http_addr)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let body = request().encode_to_vec();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    // Plain HTTP to the TLS port is not answered as OTLP.
    let plain = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", server.collector.http_addr))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    assert_eq!(server.count("spans").await, 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    let cfg = collector::CollectorConfig {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        tls: Some(listeners::tls::TlsFiles {
            cert_file: dir.path().join("missing.pem"),
            key_file: dir.path().join("missing-key.pem"),
        }),
        ..Default::default()
    };
    let err = collector::Collector::start(
        cfg,
        store,
        Arc::new(collector::CollectorMetrics::default()),
        tokio_util::sync::CancellationToken::new(),
        &tokio_util::task::TaskTracker::new(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("certificate") && msg.contains("missing.pem"),
        "{msg}"
    );
}
