//! Micro-benchmarks of the read path's pieces, through the public API only.
//!
//! `cargo bench -p lockana` (add `-- <filter>` to run one group). Figures and how to
//! read them are in `docs/performance.md`. None of this is a timed assertion.
//!
//! - `aead_200B/*`: the barrier's AEAD step on a 200-byte value, done as
//!   `barrier/cipher.rs` does it (fresh random nonce, storage path as AAD), for each
//!   cipher. The barrier itself is crate-private, so the primitive is measured here and
//!   the whole barrier (keyring lock, framing, storage) inside `kv2_read/*`.
//! - `kv2_read/*`: `GET secret/data/<key>` through `Vault::handle` on an in-memory vault,
//!   per cipher: token lookup, routing, two barrier reads, JSON.
//! - `kv2_list/*`: `LIST secret/metadata/bench/` over 100 keys (the names decoded from
//!   storage keys and sorted), and a read of one of those keys beside it.
//! - `token/*`: `auth/token/lookup-self` with a valid token, and any path with an
//!   unknown one (answered 403 after the salted-HMAC lookup).
//! - `routing/*`: a read of a missing key on a vault with 1 and with 100 mounts: the
//!   cost of longest-prefix routing as the mount table grows.
//! - Policy match: ACL policies do not exist yet (identity issue); no benchmark.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lockana::{Cipher, Operation, Request, StorageConfig, Vault};
use serde_json::json;

const VALUE_LEN: usize = 200;
const AAD: &[u8] = b"\x00\x00\x00\x01logical/00000000-0000-0000-0000-000000000000/versions/ab/1";
const CIPHERS: [Cipher; 3] = [
    Cipher::ChaCha20Poly1305,
    Cipher::XChaCha20Poly1305,
    Cipher::Aes256Gcm,
];

/// A fresh, unsealed vault on memory storage with the given cipher, KV v2 at `secret/`
/// holding `bench/k0` (about 200 bytes). Returns the vault and its root token.
fn vault_with(cipher: Cipher) -> (Vault, String) {
    let vault = Vault::open(StorageConfig::Memory).unwrap();
    let init = vault.init(1, 1, cipher).unwrap();
    let key = hex_encode(&init.keys[0]);
    vault.unseal(&key).unwrap();
    let token = init.root_token.expose().to_owned();
    vault
        .handle(
            Request::new(Operation::Update, "sys/mounts/secret")
                .with_data(json!({"type": "kv-v2"}))
                .with_token(&token),
        )
        .unwrap();
    vault
        .handle(
            Request::new(Operation::Update, "secret/data/bench/k0")
                .with_data(json!({"data": {"value": "v".repeat(190)}}))
                .with_token(&token),
        )
        .unwrap();
    (vault, token)
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn nonce<const N: usize>() -> [u8; N] {
    let mut n = [0u8; N];
    getrandom::fill(&mut n).unwrap();
    n
}

/// Seal as the barrier does: key schedule per call (what `cipher.rs` did before the
/// cached instances) and with the instance built once (what it does now).
fn aead(c: &mut Criterion) {
    let key = [7u8; 32];
    let msg = [0x5au8; VALUE_LEN];
    let mut g = c.benchmark_group("aead_200B");
    g.throughput(Throughput::Bytes(VALUE_LEN as u64));

    macro_rules! cipher_benches {
        ($name:literal, $ty:ty, $n:literal) => {{
            let inst = <$ty>::new((&key).into());
            let ct = {
                let n = nonce::<$n>();
                let mut out = n.to_vec();
                out.extend(
                    inst.encrypt(
                        (&n).into(),
                        Payload {
                            msg: &msg,
                            aad: AAD,
                        },
                    )
                    .unwrap(),
                );
                out
            };
            g.bench_function(concat!($name, "/seal_new_key_each_call"), |b| {
                b.iter(|| {
                    let n = nonce::<$n>();
                    <$ty>::new(black_box(&key).into())
                        .encrypt(
                            (&n).into(),
                            Payload {
                                msg: black_box(&msg),
                                aad: AAD,
                            },
                        )
                        .unwrap()
                })
            });
            g.bench_function(concat!($name, "/seal_cached_instance"), |b| {
                b.iter(|| {
                    let n = nonce::<$n>();
                    inst.encrypt(
                        (&n).into(),
                        Payload {
                            msg: black_box(&msg),
                            aad: AAD,
                        },
                    )
                    .unwrap()
                })
            });
            g.bench_function(concat!($name, "/open_new_key_each_call"), |b| {
                b.iter(|| {
                    let (n, body) = ct.split_at($n);
                    <$ty>::new(black_box(&key).into())
                        .decrypt(
                            n.try_into().unwrap(),
                            Payload {
                                msg: body,
                                aad: AAD,
                            },
                        )
                        .unwrap()
                })
            });
            g.bench_function(concat!($name, "/open_cached_instance"), |b| {
                b.iter(|| {
                    let (n, body) = ct.split_at($n);
                    inst.decrypt(
                        n.try_into().unwrap(),
                        Payload {
                            msg: black_box(body),
                            aad: AAD,
                        },
                    )
                    .unwrap()
                })
            });
        }};
    }
    cipher_benches!("chacha20-poly1305", ChaCha20Poly1305, 12);
    cipher_benches!("xchacha20-poly1305", XChaCha20Poly1305, 24);
    cipher_benches!("aes-256-gcm", Aes256Gcm, 12);
    g.finish();
}

fn kv2_read(c: &mut Criterion) {
    let mut g = c.benchmark_group("kv2_read");
    for cipher in CIPHERS {
        let (vault, token) = vault_with(cipher);
        g.bench_with_input(BenchmarkId::from_parameter(cipher.name()), &(), |b, ()| {
            b.iter(|| {
                vault
                    .handle(
                        Request::new(Operation::Read, "secret/data/bench/k0").with_token(&token),
                    )
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn kv2_list(c: &mut Criterion) {
    let (vault, token) = vault_with(Cipher::default());
    for i in 1..100 {
        vault
            .handle(
                Request::new(Operation::Update, format!("secret/data/bench/k{i}"))
                    .with_data(json!({"data": {"value": "v"}}))
                    .with_token(&token),
            )
            .unwrap();
    }
    let mut g = c.benchmark_group("kv2_list");
    g.bench_function("list_100_keys", |b| {
        b.iter(|| {
            let r = vault
                .handle(Request::new(Operation::List, "secret/metadata/bench/").with_token(&token))
                .unwrap();
            assert_eq!(r.data.unwrap()["keys"].as_array().unwrap().len(), 100);
        })
    });
    g.bench_function("read_among_100_keys", |b| {
        b.iter(|| {
            vault
                .handle(Request::new(Operation::Read, "secret/data/bench/k42").with_token(&token))
                .unwrap()
        })
    });
    g.finish();
}

fn token(c: &mut Criterion) {
    let (vault, token) = vault_with(Cipher::default());
    let mut g = c.benchmark_group("token");
    g.bench_function("valid/lookup-self", |b| {
        b.iter(|| {
            vault
                .handle(Request::new(Operation::Read, "auth/token/lookup-self").with_token(&token))
                .unwrap()
        })
    });
    g.bench_function("invalid/403", |b| {
        b.iter(|| {
            vault
                .handle(
                    Request::new(Operation::Read, "secret/data/bench/k0")
                        .with_token("lvs.AAAAAAAAAAAAAAAAAAAAAAAA"),
                )
                .unwrap_err()
        })
    });
    g.finish();
}

fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("routing");
    for mounts in [1usize, 100] {
        let (vault, token) = vault_with(Cipher::default());
        for i in 1..mounts {
            vault
                .handle(
                    Request::new(Operation::Update, format!("sys/mounts/team{i:03}/kv"))
                        .with_data(json!({"type": "kv-v2"}))
                        .with_token(&token),
                )
                .unwrap();
        }
        g.bench_with_input(
            BenchmarkId::new("missing_key_read_mounts", mounts),
            &(),
            |b, ()| {
                b.iter(|| {
                    vault
                        .handle(
                            Request::new(Operation::Read, "secret/data/bench/missing")
                                .with_token(&token),
                        )
                        .unwrap_err()
                })
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    // Short runs: two shared cores; the shape of the numbers matters, not the 4th digit.
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(30);
    targets = aead, kv2_read, kv2_list, token, routing
}
criterion_main!(benches);
