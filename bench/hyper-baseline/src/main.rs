//! Bare hyper: `hyper-baseline PORT READ_BODY_FILE HEALTH_BODY_FILE`.
//!
//! Answers `GET /v1/sys/health` with the bytes of HEALTH_BODY_FILE and every other
//! request with the bytes of READ_BODY_FILE (a captured Lockana KV v2 read), as JSON.
//! No routing, no parsing, no crypto: the upper bound for an HTTP/1.1 server on this
//! machine with this runtime.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: hyper-baseline PORT READ_BODY_FILE HEALTH_BODY_FILE");
        std::process::exit(2);
    }
    let read = Bytes::from(std::fs::read(&args[2])?);
    let health = Bytes::from(std::fs::read(&args[3])?);
    let listener = TcpListener::bind(("127.0.0.1", args[1].parse::<u16>().unwrap_or(8300))).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let (read, health) = (read.clone(), health.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let body = if req.uri().path() == "/v1/sys/health" {
                    health.clone()
                } else {
                    read.clone()
                };
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(body))
                            .unwrap_or_default(),
                    )
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
