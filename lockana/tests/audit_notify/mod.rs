//! Audit devices and notifications through `Vault::handle`, with real files and
//! local HTTP receivers on 127.0.0.1 (a fake Telegram Bot API, a webhook).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use lockana::{Cipher, Connection, Error, Operation, Request, StorageConfig, Vault};
use serde_json::{Value, json};
use sha2::Sha256;

use Operation::*;

fn call(
    v: &Vault,
    token: &str,
    op: Operation,
    path: &str,
    data: Value,
) -> Result<lockana::Response, Error> {
    v.handle(
        Request::new(op, path)
            .with_data(data)
            .with_token(token)
            .with_connection(Connection {
                remote_addr: Some("203.0.113.7:40000".parse().unwrap()),
                user_agent: Some("curl/8.5".into()),
            }),
    )
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

fn dev() -> (Vault, String) {
    let token = format!("lvs.root-{}", random_hex(8));
    let (vault, _) = Vault::dev(Some(token.clone())).unwrap();
    (vault, token)
}

fn enable_file(v: &Vault, t: &str, name: &str, file: &Path, extra: Value) {
    let mut options = json!({"file_path": file.to_str().unwrap()});
    if let (Value::Object(o), Value::Object(e)) = (&mut options, extra) {
        o.extend(e);
    }
    call(
        v,
        t,
        Update,
        &format!("sys/audit/{name}"),
        json!({"type": "file", "options": options}),
    )
    .unwrap();
}

fn lines(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn verify(files: &[&Path]) -> Result<lockana::ChainSummary, lockana::ChainBreak> {
    let readers: Vec<_> = files
        .iter()
        .map(|f| BufReader::new(std::fs::File::open(f).unwrap()))
        .collect();
    lockana::verify_audit_chain(readers).map_err(|e| e.unwrap())
}

// ---------------------------------------------------------------- audit

#[test]
fn audit_entries_have_vaults_shape_and_hmac_every_string() {
    let (v, t) = dev();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    enable_file(&v, &t, "file", &file, json!({}));
    call(
        &v,
        &t,
        Update,
        "secret/data/app",
        json!({"data": {"password": "hunter2", "n": 5}}),
    )
    .unwrap();
    call(&v, &t, Read, "secret/data/app", json!({})).unwrap();

    let listed = call(&v, &t, Read, "sys/audit", json!({}))
        .unwrap()
        .data
        .unwrap();
    assert_eq!(listed["file/"]["type"], "file");
    assert_eq!(
        listed["file/"]["options"]["file_path"],
        file.to_str().unwrap()
    );

    let hash = call(
        &v,
        &t,
        Update,
        "sys/audit-hash/file",
        json!({"input": "hunter2"}),
    )
    .unwrap()
    .data
    .unwrap()["hash"]
        .clone();
    assert!(hash.as_str().unwrap().starts_with("hmac-sha256:"));
    let entries = lines(&file);
    let write_req = entries
        .iter()
        .find(|e| {
            e["type"] == "request"
                && e["request"]["path"] == "secret/data/app"
                && e["request"]["operation"] == "update"
        })
        .expect("request entry");
    assert_eq!(write_req["request"]["data"]["data"]["password"], hash);
    assert_eq!(write_req["request"]["data"]["data"]["n"], 5);
    assert_eq!(write_req["request"]["namespace"]["id"], "root");
    assert_eq!(write_req["request"]["remote_address"], "203.0.113.7");
    assert_eq!(write_req["auth"]["policies"], json!(["root"]));
    assert!(
        write_req["auth"]["client_token"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:")
    );
    assert!(
        write_req["auth"]["accessor"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:")
    );
    let read_resp = entries
        .iter()
        .find(|e| {
            e["type"] == "response"
                && e["request"]["operation"] == "read"
                && e["request"]["path"] == "secret/data/app"
        })
        .expect("response entry");
    assert_eq!(read_resp["response"]["data"]["data"]["password"], hash);
    assert_eq!(
        read_resp["request"]["id"],
        entries
            .iter()
            .find(|e| e["type"] == "request" && e["request"]["id"] == read_resp["request"]["id"])
            .unwrap()["request"]["id"]
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("hunter2") && !text.contains(&t));
    verify(&[&file]).unwrap();
}

#[test]
fn log_raw_and_hmac_accessor_false_are_honoured() {
    let (v, t) = dev();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.log");
    let clear_acc = dir.path().join("acc.log");
    enable_file(&v, &t, "raw", &raw, json!({"log_raw": "true"}));
    enable_file(&v, &t, "acc", &clear_acc, json!({"hmac_accessor": false}));
    call(
        &v,
        &t,
        Update,
        "secret/data/x",
        json!({"data": {"k": "visible"}}),
    )
    .unwrap();
    assert!(std::fs::read_to_string(&raw).unwrap().contains("visible"));
    let acc = lines(&clear_acc);
    let e = acc
        .iter()
        .find(|e| e["type"] == "request" && e["request"]["path"] == "secret/data/x")
        .unwrap();
    assert!(
        !e["auth"]["accessor"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:")
    );
    assert!(
        e["auth"]["client_token"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:")
    );
    assert!(
        !std::fs::read_to_string(&clear_acc)
            .unwrap()
            .contains("visible")
    );
    // Unknown options and types are refused; disabling works and is idempotent.
    assert!(matches!(
        call(&v, &t, Update, "sys/audit/s", json!({"type": "syslog"})),
        Err(Error::InvalidRequest(_))
    ));
    call(&v, &t, Delete, "sys/audit/raw", json!({})).unwrap();
    call(&v, &t, Delete, "sys/audit/raw", json!({})).unwrap();
    let listed = call(&v, &t, Read, "sys/audit", json!({}))
        .unwrap()
        .data
        .unwrap();
    assert!(listed.get("raw/").is_none() && listed.get("acc/").is_some());
}

#[test]
fn audit_fail_closed_dev_full_refuses_every_request_and_returns_no_secret() {
    let (v, t) = dev();
    call(
        &v,
        &t,
        Update,
        "secret/data/app",
        json!({"data": {"password": "s3cret-value"}}),
    )
    .unwrap();
    // The API refuses a device it cannot write to...
    assert!(matches!(
        call(
            &v,
            &t,
            Update,
            "sys/audit/full",
            json!({"type": "file", "options": {"file_path": "/dev/full"}})
        ),
        Err(Error::InvalidRequest(_))
    ));
    // ...but a declared one that breaks later must fail closed.
    v.declare_audit_device(
        "full",
        &json!({"type": "file", "options": {"file_path": "/dev/full"}}),
    )
    .unwrap();
    for (op, path, data) in [
        (Read, "secret/data/app", json!({})),
        (
            Update,
            "secret/data/app",
            json!({"data": {"password": "new"}}),
        ),
        (List, "secret/metadata/", json!({})),
        (Read, "sys/mounts", json!({})),
        (Read, "auth/token/lookup-self", json!({})),
    ] {
        match call(&v, &t, op, path, data) {
            Err(Error::Audit(_)) => {}
            Ok(r) => panic!("{op:?} {path} served without audit: {:?}", r.data),
            Err(e) => panic!("{op:?} {path}: wrong error {e}"),
        }
    }
    // With a second, working device the vault serves again (one device suffices).
    let dir = tempfile::tempdir().unwrap();
    v.declare_audit_device("good", &json!({"type": "file", "options": {"file_path": dir.path().join("a.log").to_str().unwrap()}})).unwrap();
    let r = call(&v, &t, Read, "secret/data/app", json!({})).unwrap();
    assert_eq!(r.data.unwrap()["data"]["password"], "s3cret-value");
}

#[test]
fn audit_chain_names_first_bad_line_for_edit_delete_swap_truncate() {
    let (v, t) = dev();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    enable_file(&v, &t, "file", &file, json!({}));
    for i in 0..4 {
        call(
            &v,
            &t,
            Update,
            &format!("secret/data/k{i}"),
            json!({"data": {"v": i}}),
        )
        .unwrap();
    }
    let (hash, seq) = head(&v, &t, "file");
    let good = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        verify(&[&file]).unwrap().lines as usize,
        good.lines().count()
    );
    let mut ls: Vec<String> = good.lines().map(str::to_owned).collect();
    let write = |ls: &[String], tail: &str| {
        let p = dir.path().join("tampered.log");
        std::fs::write(&p, ls.join("\n") + tail).unwrap();
        verify(&[&p]).expect_err("tampering must be detected").line
    };
    // Edit line 4 (a value inside the entry).
    let mut edited = ls.clone();
    edited[3] = edited[3].replace("\"update\"", "\"delete\"");
    assert_ne!(edited[3], ls[3]);
    assert_eq!(write(&edited, "\n"), 4);
    // Delete line 3.
    let mut deleted = ls.clone();
    deleted.remove(2);
    assert_eq!(write(&deleted, "\n"), 3);
    // Swap lines 5 and 6.
    let mut swapped = ls.clone();
    swapped.swap(4, 5);
    assert_eq!(write(&swapped, "\n"), 5);
    // Truncate the tail mid-line: the chain verifies up to the line before and says
    // the last line is torn. (The last line is the head read's response; the head
    // itself is the line before.)
    let n = ls.len() as u64;
    let last = ls.last_mut().unwrap();
    last.truncate(last.len() / 2);
    let p = dir.path().join("torn.log");
    std::fs::write(&p, ls.join("\n")).unwrap();
    let s = verify_against(&[&p], &hash);
    assert!(s.torn_tail);
    assert_eq!(s.lines, n - 1);
    assert_eq!(
        (s.lines_after_expected_head, s.last_seq),
        (Some(0), Some(seq))
    );
}

/// The head the vault recorded for a device: (hash, lockana_seq).
fn head(v: &Vault, t: &str, device: &str) -> (String, u64) {
    let d = call(
        v,
        t,
        Read,
        &format!("sys/lockana/audit-head/{device}"),
        json!({}),
    )
    .unwrap()
    .data
    .unwrap();
    let h = &d["devices"][format!("{device}/")];
    (
        h["hash"].as_str().unwrap().to_owned(),
        h["seq"].as_u64().unwrap(),
    )
}

fn verify_against(files: &[&Path], hash: &str) -> lockana::ChainSummary {
    let readers: Vec<_> = files
        .iter()
        .map(|f| BufReader::new(std::fs::File::open(f).unwrap()))
        .collect();
    let opts = lockana::VerifyOptions {
        expected_head: Some(hash.to_owned()),
        public_key: None,
    };
    lockana::verify_audit_log(readers, &opts)
        .map_err(|e| e.unwrap())
        .unwrap()
}

#[test]
fn audit_tail_truncation_is_detected_against_the_recorded_head() {
    let (v, t) = dev();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    enable_file(&v, &t, "file", &file, json!({"checkpoint_interval": "0"}));
    for i in 0..5 {
        call(
            &v,
            &t,
            Update,
            &format!("secret/data/k{i}"),
            json!({"data": {"v": i}}),
        )
        .unwrap();
    }
    let (hash, seq) = head(&v, &t, "file");
    let text = std::fs::read_to_string(&file).unwrap();
    let all: Vec<&str> = text.lines().collect();
    // The head read's own response line came after the head was taken: the file is
    // ahead by it.
    let s = verify_against(&[&file], &hash);
    assert_eq!(s.lines_after_expected_head, Some(1));
    assert_eq!(s.last_seq, Some(seq + 1));
    // Whole lines cut from the end: the chain alone still verifies...
    let cut = dir.path().join("cut.log");
    std::fs::write(&cut, all[..all.len() - 5].join("\n") + "\n").unwrap();
    assert!(verify(&[&cut]).is_ok(), "a shorter chain is still a chain");
    // ...but the recorded head is not in the file, and the count of missing lines is known.
    let s = verify_against(&[&cut], &hash);
    assert_eq!(s.lines_after_expected_head, None);
    assert_eq!(seq - s.last_seq.unwrap(), 4);
}

#[test]
fn audit_lines_cut_while_the_vault_is_down_stay_visible_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.redb");
    let file = dir.path().join("audit.log");
    let (key, root, recorded) = {
        let v = Vault::open(StorageConfig::Redb(db.clone())).unwrap();
        let init = v.init(1, 1, Cipher::default()).unwrap();
        let key = hex::encode(&init.keys[0][..]);
        let root = init.root_token.expose().to_owned();
        v.unseal(&key).unwrap();
        enable_file(&v, &root, "file", &file, json!({}));
        for _ in 0..3 {
            call(&v, &root, Read, "sys/mounts", json!({})).unwrap();
        }
        let (_, seq) = head(&v, &root, "file");
        v.close().unwrap();
        (key, root, seq)
    };
    // Cut the last 4 lines while the vault is down.
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len() as u64,
        recorded + 1,
        "the head read was audited too"
    );
    std::fs::write(&file, lines[..lines.len() - 4].join("\n") + "\n").unwrap();
    let v = open_retry(&db);
    v.unseal(&key).unwrap();
    call(&v, &root, Read, "sys/mounts", json!({})).unwrap();
    // The device continued from the recorded head, not the cut file: the gap shows.
    let e = verify(&[&file]).expect_err("the cut must stay visible");
    assert_eq!(e.line as usize, lines.len() - 4 + 1);
    assert!(e.reason.contains("4 line(s) missing"), "{}", e.reason);
}

#[test]
fn audit_head_endpoint_needs_sudo() {
    let (v, t) = dev();
    let dir = tempfile::tempdir().unwrap();
    enable_file(&v, &t, "file", &dir.path().join("a.log"), json!({}));
    call(
        &v,
        &t,
        Update,
        "sys/policies/acl/reader",
        json!({"policy": "path \"sys/lockana/*\" { capabilities = [\"read\"] }"}),
    )
    .unwrap();
    let r = call(
        &v,
        &t,
        Update,
        "auth/token/create",
        json!({"policies": ["reader"]}),
    )
    .unwrap();
    let reader = r.auth.unwrap().client_token.unwrap().expose().to_owned();
    assert!(matches!(
        call(&v, &reader, Read, "sys/lockana/audit-head", json!({})),
        Err(Error::PermissionDenied)
    ));
    let d = call(&v, &t, Read, "sys/lockana/audit-head", json!({}))
        .unwrap()
        .data
        .unwrap();
    assert_eq!(d["public_key"].as_str().unwrap().len(), 64);
    assert!(d["devices"]["file/"]["seq"].as_u64().unwrap() >= 1);
    assert!(matches!(
        call(&v, &t, Read, "sys/lockana/audit-head/nope", json!({})),
        Err(Error::InvalidRequest(_))
    ));
}

/// Recomputes every line's chain fields and numbers, as an attacker who rewrites a
/// file can (the hash chain alone has no key).
fn rechain(text: &str) -> String {
    use sha2::Digest;
    let mut prev = "0".repeat(64);
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let cut = line.find(",\"lockana_seq\":").unwrap();
        let mut l = format!(
            "{},\"lockana_seq\":{},\"lockana_prev_hash\":\"{prev}\"",
            &line[..cut],
            i + 1
        );
        let h = hex::encode(sha2::Sha256::digest(l.as_bytes()));
        l.push_str(&format!(",\"lockana_hash\":\"{h}\"}}\n"));
        out.push_str(&l);
        prev = h;
    }
    out
}

#[test]
fn audit_checkpoints_are_signed_and_catch_a_rewritten_chain() {
    let (v, t) = dev();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    enable_file(&v, &t, "file", &file, json!({"checkpoint_interval": "4"}));
    for i in 0..6 {
        call(
            &v,
            &t,
            Update,
            &format!("secret/data/k{i}"),
            json!({"data": {"v": i}}),
        )
        .unwrap();
    }
    let key_hex = call(&v, &t, Read, "sys/lockana/audit-head", json!({}))
        .unwrap()
        .data
        .unwrap()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = hex::decode(&key_hex).unwrap();
    let check = |path: &Path| {
        let opts = lockana::VerifyOptions {
            expected_head: None,
            public_key: Some(key.clone()),
        };
        lockana::verify_audit_log([BufReader::new(std::fs::File::open(path).unwrap())], &opts)
            .map_err(|e| e.unwrap())
    };
    // Checkpoints are JSON lines of their own type, every 4 entries; tools reading
    // Vault's format select request/response entries and pass over them.
    let entries = lines(&file);
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    // The first right after the device opens (after the enable marker), then one
    // after every 4 entries.
    let at: Vec<usize> = (0..types.len())
        .filter(|i| types[*i] == "lockana_checkpoint")
        .collect();
    assert!(at.len() >= 3, "{types:?}");
    assert_eq!(at[0], 1);
    assert!(at.windows(2).all(|w| w[1] - w[0] == 5), "{at:?}");
    assert!(
        types
            .iter()
            .all(|t| ["request", "response", "lockana_checkpoint"].contains(t))
    );
    assert!(
        entries.iter().all(|e| e["request"]["path"].is_string()),
        "every line has a request object, checkpoints too"
    );
    let s = check(&file).unwrap();
    assert!(s.checkpoints_verified >= 2, "{s:?}");
    assert_eq!(s.checkpoints, s.checkpoints_verified);
    // An attacker edits line 3 and recomputes the whole chain: the hash chain alone
    // is satisfied, the first checkpoint after the edit is not.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut ls: Vec<String> = text.lines().map(str::to_owned).collect();
    let before = ls[2].clone();
    ls[2] = ls[2].replace("\"update\"", "\"delete\"");
    assert_ne!(before, ls[2]);
    let forged = dir.path().join("forged.log");
    std::fs::write(&forged, rechain(&(ls.join("\n") + "\n"))).unwrap();
    assert!(
        verify(&[&forged]).is_ok(),
        "the unkeyed chain is recomputable"
    );
    assert_eq!(
        check(&forged).expect_err("signature").line as usize,
        at[1] + 1
    );
    // Removing the checkpoints and rechaining: the next one is missed once overdue.
    let no_cp: Vec<String> = text
        .lines()
        .filter(|l| !l.contains("lockana_checkpoint") || l.contains("\"lockana_seq\":2,"))
        .map(str::to_owned)
        .collect();
    let stripped = dir.path().join("stripped.log");
    std::fs::write(&stripped, rechain(&(no_cp.join("\n") + "\n"))).unwrap();
    assert!(verify(&[&stripped]).is_ok());
    let e = check(&stripped).expect_err("checkpoint removed");
    assert!(e.reason.contains("checkpoint"), "{}", e.reason);
}

#[test]
fn audit_concurrent_writers_never_interleave_lines() {
    let (v, t) = dev();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    enable_file(&v, &t, "file", &file, json!({"checkpoint_interval": "7"}));
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let (v, t) = (v.clone(), t.clone());
            std::thread::spawn(move || {
                // Long values make each line several KB: a torn interleave would show.
                let big = "x".repeat(4000 + n * 100);
                for i in 0..25 {
                    call(
                        &v,
                        &t,
                        Update,
                        &format!("secret/data/t{n}/{i}"),
                        json!({"data": {"v": big}}),
                    )
                    .unwrap();
                    call(&v, &t, Read, &format!("secret/data/t{n}/{i}"), json!({})).unwrap();
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let entries = lines(&file); // every line parses as JSON
    let s = verify(&[&file]).unwrap();
    assert_eq!(s.lines as usize, entries.len());
    assert!(s.torn_lines.is_empty() && !s.torn_tail);
    let seqs: Vec<u64> = entries
        .iter()
        .map(|e| e["lockana_seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=entries.len() as u64).collect::<Vec<_>>());
    let requests = entries.iter().filter(|e| e["type"] == "request").count();
    assert_eq!(requests, 1 + 8 * 25 * 2, "the marker and every request");
    // Every request has its response, matched by id.
    let ids = |ty: &str| {
        let mut v: Vec<String> = entries
            .iter()
            .filter(|e| e["type"] == ty)
            .map(|e| e["request"]["id"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    // The enabling request's response is audited too (its request line came before
    // the device existed).
    assert_eq!(ids("response").len(), 8 * 25 * 2 + 1);
    let (hash, seq) = head(&v, &t, "file");
    let s = verify_against(&[&file], &hash);
    // The file ends with the head read's own response line, one past the head.
    assert_eq!(
        s.lines_after_expected_head,
        Some(1),
        "the head is in the file"
    );
    assert_eq!(s.last_seq, Some(seq + 1));
}

#[test]
fn audit_chain_continues_across_reopen_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.redb");
    let file = dir.path().join("audit.log");
    let rotated = dir.path().join("audit.log.1");
    let (key, root) = {
        let v = Vault::open(StorageConfig::Redb(db.clone())).unwrap();
        let init = v.init(1, 1, Cipher::default()).unwrap();
        let key = hex::encode(&init.keys[0][..]);
        let root = init.root_token.expose().to_owned();
        v.unseal(&key).unwrap();
        call(
            &v,
            &root,
            Update,
            "sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .unwrap();
        enable_file(
            &v,
            &root,
            "file",
            &file,
            json!({"checkpoint_interval": "3"}),
        );
        call(
            &v,
            &root,
            Update,
            "secret/data/a",
            json!({"data": {"x": "1"}}),
        )
        .unwrap();
        std::fs::rename(&file, &rotated).unwrap();
        v.reopen_audit_devices().unwrap();
        call(
            &v,
            &root,
            Update,
            "secret/data/b",
            json!({"data": {"x": "2"}}),
        )
        .unwrap();
        v.close().unwrap();
        (key, root)
    };
    let v = open_retry(&db);
    v.unseal(&key).unwrap();
    call(&v, &root, Read, "secret/data/b", json!({})).unwrap();
    let listed = call(&v, &root, Read, "sys/audit", json!({}))
        .unwrap()
        .data
        .unwrap();
    assert!(
        listed.contains_key("file/"),
        "device table survives a restart"
    );
    let s = verify(&[&rotated, &file]).unwrap();
    // Checkpoints stay on time across the reopen and the restart.
    let public_key = call(&v, &root, Read, "sys/lockana/audit-head", json!({}))
        .unwrap()
        .data
        .unwrap()["public_key"]
        .as_str()
        .map(|k| hex::decode(k).unwrap());
    let opts = lockana::VerifyOptions {
        expected_head: None,
        public_key,
    };
    let readers = [&rotated, &file].map(|f| BufReader::new(std::fs::File::open(f).unwrap()));
    let signed = lockana::verify_audit_log(readers, &opts)
        .map_err(|e| e.unwrap())
        .unwrap();
    assert!(signed.checkpoints_verified >= 3, "{signed:?}");
    assert!(s.starts_at_genesis());
    assert!(s.lines > 6);
    assert!(!verify(&[&file]).unwrap().starts_at_genesis());
    assert!(verify(&[&file, &rotated]).is_err(), "files out of order");
}

/// Another vault on the same redb file may still be closing on its worker thread.
fn open_retry(db: &Path) -> Vault {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Vault::open(StorageConfig::Redb(db.to_owned())) {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}

// ---------------------------------------------------------------- receivers

#[derive(Clone, Debug)]
struct Hit {
    // Read by the Telegram test only.
    #[cfg_attr(not(feature = "telegram"), expect(dead_code))]
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Hit {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that records requests and answers `answer`.
struct Receiver {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    fn start(listener: TcpListener, answer: &'static str) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let h = Arc::clone(&hits);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                let path = first.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut headers = Vec::new();
                let mut len = 0usize;
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = l.trim_end().split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        headers.push((k.to_owned(), v.trim().to_owned()));
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                h.lock().unwrap().push(Hit {
                    path,
                    headers,
                    body,
                });
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Receiver { addr, hits }
    }

    fn wait_for(&self, n: usize, secs: u64) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let hits = self.hits.lock().unwrap().clone();
            if hits.len() >= n || Instant::now() > deadline {
                return hits;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

const WEBHOOK_SECRET: &str = "webhook-secret-0123456789";

fn check_signature(hit: &Hit) {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(&hit.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        hit.header("X-Lockana-Signature"),
        Some(expected.as_str()),
        "bad signature"
    );
}

fn webhook_channel(v: &Vault, t: &str, name: &str, addr: SocketAddr) {
    call(
        v,
        t,
        Update,
        &format!("sys/lockana/notify/channels/{name}"),
        json!({
            "type": "webhook", "url": format!("http://{addr}/hook"), "secret": WEBHOOK_SECRET,
        }),
    )
    .unwrap();
}

// ---------------------------------------------------------------- notifications

#[test]
fn webhook_receives_signed_events_and_secrets_are_never_returned() {
    let (v, t) = dev();
    let rx = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap(), "{}");
    webhook_channel(&v, &t, "hook", rx.addr);
    call(
        &v,
        &t,
        Update,
        "sys/lockana/notify/routes/prod",
        json!({
            "events": ["watched_path_written", "watched_path_deleted"],
            "paths": ["secret/data/prod/*"],
            "channels": ["hook"],
        }),
    )
    .unwrap();
    // A route with a path filter only matches events that have a path: seal needs its own.
    call(
        &v,
        &t,
        Update,
        "sys/lockana/notify/routes/life",
        json!({"events": ["sealed"], "channels": ["hook"]}),
    )
    .unwrap();
    let got = call(&v, &t, Read, "sys/lockana/notify/channels/hook", json!({}))
        .unwrap()
        .data
        .unwrap();
    let text = Value::Object(got.clone()).to_string();
    assert!(
        !text.contains(WEBHOOK_SECRET) && !text.contains("/hook"),
        "{text}"
    );
    assert_eq!(got["type"], "webhook");
    let keys = call(&v, &t, List, "sys/lockana/notify/channels/", json!({}))
        .unwrap()
        .data
        .unwrap();
    assert_eq!(keys["keys"], json!(["hook"]));
    assert!(
        call(
            &v,
            &t,
            Update,
            "sys/lockana/notify/routes/bad",
            json!({"events": ["sealed"], "channels": ["nope"]})
        )
        .is_err()
    );

    call(
        &v,
        &t,
        Update,
        "secret/data/dev/db",
        json!({"data": {"pw": "not-watched"}}),
    )
    .unwrap();
    call(
        &v,
        &t,
        Update,
        "secret/data/prod/db",
        json!({"data": {"pw": "CANARY-prod"}}),
    )
    .unwrap();
    let hits = rx.wait_for(1, 10);
    assert_eq!(hits.len(), 1, "only the watched path notifies");
    let hit = &hits[0];
    check_signature(hit);
    let body: Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(body["kind"], "watched_path_written");
    assert_eq!(body["path"], "secret/data/prod/db");
    assert_eq!(body["remote_addr"], "203.0.113.7");
    assert_eq!(hit.header("X-Lockana-Delivery"), body["id"].as_str());
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("secret/data/prod/db: written from 203.0.113.7 (curl/8.5) at ")
    );
    let raw = String::from_utf8_lossy(&hit.body);
    assert!(!raw.contains("CANARY") && !raw.contains(&t));
    // Sealing notifies too, although the vault is sealed when it is delivered.
    v.seal().unwrap();
    let hits = rx.wait_for(2, 10);
    let body: Value = serde_json::from_slice(&hits[1].body).unwrap();
    assert_eq!(body["kind"], "sealed");
}

#[test]
fn outbox_survives_restart_and_every_event_arrives_once_receiver_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.redb");
    // A port nobody listens on yet: the receiver is "down".
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (key, root) = {
        let v = Vault::open(StorageConfig::Redb(db.clone())).unwrap();
        v.set_notify_backoff(Duration::from_millis(50));
        let init = v.init(1, 1, Cipher::default()).unwrap();
        let key = hex::encode(&init.keys[0][..]);
        let root = init.root_token.expose().to_owned();
        v.unseal(&key).unwrap();
        call(
            &v,
            &root,
            Update,
            "sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .unwrap();
        webhook_channel(&v, &root, "hook", port);
        call(&v, &root, Update, "sys/lockana/notify/routes/all", json!({"events": ["watched_path_written"], "paths": ["secret/*"], "channels": ["hook"]})).unwrap();
        for i in 0..5 {
            call(
                &v,
                &root,
                Update,
                &format!("secret/data/k{i}"),
                json!({"data": {"v": "x"}}),
            )
            .unwrap();
        }
        assert_eq!(v.pending_notifications(), 5);
        v.close().unwrap();
        (key, root)
    };
    let _ = root;
    let v = open_retry(&db);
    v.set_notify_backoff(Duration::from_millis(50));
    v.unseal(&key).unwrap();
    // Bind the very port the channel points at (retry: the OS may hold it briefly).
    let listener = (0..100)
        .find_map(|_| {
            TcpListener::bind(port).ok().or_else(|| {
                std::thread::sleep(Duration::from_millis(20));
                None
            })
        })
        .expect("rebind the receiver port");
    let rx = Receiver::start(listener, "{}");
    let hits = rx.wait_for(5, 20);
    let mut ids: Vec<String> = hits
        .iter()
        .map(|h| {
            check_signature(h);
            serde_json::from_slice::<Value>(&h.body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "every event, each with its own id: {hits:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while v.pending_notifications() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        v.pending_notifications(),
        0,
        "delivered items leave the outbox"
    );
}

#[cfg(feature = "telegram")]
#[test]
fn telegram_fake_bot_api_gets_send_message_with_chat_and_text() {
    let (v, t) = dev();
    let answer = r#"{"ok":true,"result":{"message_id":1,"date":0,"chat":{"id":-100123,"type":"private"},"text":"x"}}"#;
    let rx = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap(), answer);
    let bot_token = format!("123456:{}", random_hex(12));
    call(
        &v,
        &t,
        Update,
        "sys/lockana/notify/channels/tg",
        json!({
            "type": "telegram", "bot_token": bot_token, "chat_id": "-100123",
            "api_url": format!("http://{}/", rx.addr),
        }),
    )
    .unwrap();
    let shown = Value::Object(
        call(&v, &t, Read, "sys/lockana/notify/channels/tg", json!({}))
            .unwrap()
            .data
            .unwrap(),
    )
    .to_string();
    assert!(!shown.contains(&bot_token));
    call(
        &v,
        &t,
        Update,
        "sys/lockana/notify/routes/root",
        json!({"events": ["root_token_used"], "channels": ["tg"]}),
    )
    .unwrap();
    call(&v, &t, Read, "sys/mounts", json!({})).unwrap();
    let hits = rx.wait_for(1, 15);
    assert!(!hits.is_empty(), "no sendMessage call");
    let hit = &hits[0];
    assert!(
        hit.path.ends_with("/SendMessage") || hit.path.ends_with("/sendMessage"),
        "{}",
        hit.path
    );
    let body: Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(body["chat_id"], json!(-100123));
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("⚠️ "), "{text}");
    assert!(
        text.contains("root token used") && text.contains("203.0.113.7 (curl/8.5)"),
        "{text}"
    );
    assert!(!text.contains(&t));
}

#[test]
fn canary_secret_and_root_token_never_reach_audit_errors_or_payloads() {
    let (v, t) = dev();
    let canary = format!("CANARY-{}", random_hex(12));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    enable_file(&v, &t, "file", &file, json!({}));
    let rx = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap(), "{}");
    webhook_channel(&v, &t, "hook", rx.addr);
    call(
        &v,
        &t,
        Update,
        "sys/lockana/notify/routes/all",
        json!({"events": "*", "channels": ["hook"]}),
    )
    .unwrap();

    let mut errors = Vec::new();
    call(
        &v,
        &t,
        Update,
        "secret/data/app",
        json!({"data": {"pw": canary}}),
    )
    .unwrap();
    call(&v, &t, Read, "secret/data/app", json!({})).unwrap();
    // Malformed requests carrying the canary and the token.
    for (op, path, data) in [
        (Update, "secret/data/app", json!({"data": canary})),
        (
            Update,
            "secret/data/app",
            json!({"data": {"pw": canary}, "options": {"cas": canary}}),
        ),
        (
            Update,
            "sys/audit/x",
            json!({"type": canary, "options": {"file_path": canary}}),
        ),
        (Update, "sys/audit-hash/file", json!({"input": [canary]})),
        (
            Update,
            "sys/lockana/notify/channels/x",
            json!({"type": "webhook", "url": canary, "secret": canary}),
        ),
        (Read, "nomount/x", json!({"q": canary})),
        // An unknown engine type used to be echoed in the error text.
        (Update, "sys/mounts/canary", json!({"type": canary})),
    ] {
        match call(&v, &t, op, path, data) {
            Err(e) => errors.push(e.to_string()),
            Ok(_) => panic!("{op:?} {path} should fail"),
        }
    }
    // The canary as a token, and the root token in a body.
    errors.push(
        call(&v, &canary, Read, "secret/data/app", json!({}))
            .unwrap_err()
            .to_string(),
    );
    let _ = call(
        &v,
        &t,
        Update,
        "secret/data/tok",
        json!({"data": {"token": t}}),
    );
    let _ = rx.wait_for(3, 5);
    let audit = std::fs::read_to_string(&file).unwrap();
    let payloads: String = rx
        .hits
        .lock()
        .unwrap()
        .iter()
        .map(|h| String::from_utf8_lossy(&h.body).into_owned())
        .collect();
    assert!(!payloads.is_empty());
    for (what, hay) in [
        ("audit file", &audit),
        ("errors", &errors.join("\n")),
        ("webhook payloads", &payloads),
    ] {
        assert!(!hay.contains(&canary), "canary in {what}");
        assert!(!hay.contains(&t), "root token in {what}");
    }
    verify(&[&file]).unwrap();
}

#[test]
fn sealed_event_reaches_declared_channel_which_is_read_only() {
    let (v, t) = dev();
    let rx = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap(), "{}");
    v.declare_notify_channel("hook", &json!({"type": "webhook", "url": format!("http://{}/h", rx.addr), "secret": WEBHOOK_SECRET})).unwrap();
    v.declare_notify_route(
        "life",
        &json!({"events": ["sealed", "unsealed"], "channels": ["hook"]}),
    )
    .unwrap();
    assert!(
        call(
            &v,
            &t,
            Delete,
            "sys/lockana/notify/channels/hook",
            json!({})
        )
        .is_err(),
        "declared channels are read-only"
    );
    let shown = call(&v, &t, Read, "sys/lockana/notify/channels/hook", json!({}))
        .unwrap()
        .data
        .unwrap();
    assert_eq!(shown["declared"], true);
    v.seal().unwrap();
    let hits = rx.wait_for(1, 10);
    let kinds: Vec<String> = hits
        .iter()
        .map(|h| {
            serde_json::from_slice::<Value>(&h.body).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, ["sealed"]);
}

#[test]
fn generate_root_and_rekey_notify_their_routes_without_the_token_or_keys() {
    let token = format!("lvs.root-{}", random_hex(8));
    let (v, creds) = Vault::dev(Some(token.clone())).unwrap();
    let rx = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap(), "{}");
    webhook_channel(&v, &token, "hook", rx.addr);
    call(
        &v,
        &token,
        Update,
        "sys/lockana/notify/routes/operator",
        json!({"events": ["root_token_generated", "unseal_keys_rekeyed"], "channels": ["hook"]}),
    )
    .unwrap();
    let anon = |op, path: &str, body: Value| v.handle(Request::new(op, path).with_data(body));
    let key = creds.unseal_key_base64.clone();
    let st = anon(Update, "sys/generate-root/attempt", json!({}))
        .unwrap()
        .data
        .unwrap();
    let nonce = st["nonce"].as_str().unwrap().to_owned();
    let done = anon(
        Update,
        "sys/generate-root/update",
        json!({"key": key, "nonce": nonce}),
    )
    .unwrap()
    .data
    .unwrap();
    let encoded = done["encoded_token"].as_str().unwrap().to_owned();
    let st = anon(
        Update,
        "sys/rekey/init",
        json!({"secret_shares": 1, "secret_threshold": 1}),
    )
    .unwrap()
    .data
    .unwrap();
    let nonce = st["nonce"].as_str().unwrap().to_owned();
    let rekeyed = anon(
        Update,
        "sys/rekey/update",
        json!({"key": key, "nonce": nonce}),
    )
    .unwrap()
    .data
    .unwrap();
    let new_key = rekeyed["keys_base64"][0].as_str().unwrap().to_owned();
    let hits = rx.wait_for(2, 10);
    let mut kinds: Vec<String> = hits
        .iter()
        .map(|h| {
            let body = String::from_utf8_lossy(&h.body);
            for secret in [&encoded, &key, &new_key] {
                assert!(
                    !body.contains(secret.as_str()),
                    "event leaked a secret: {body}"
                );
            }
            serde_json::from_str::<Value>(&body).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["root_token_generated", "unseal_keys_rekeyed"]);
}

// ---------------------------------------------------------------- path-help

#[test]
fn path_help_needs_a_token_and_is_audited() {
    let (v, t) = dev();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    enable_file(&v, &t, "file", &file, json!({}));
    let help = |token: Option<&str>, path: &str| {
        let mut req = Request::new(Read, path);
        req.help = true;
        if let Some(token) = token {
            req = req.with_token(token);
        }
        v.handle(req)
    };
    let r = help(Some(&t), "secret/data/app").unwrap();
    let body = r.data.unwrap();
    assert!(
        body["help"]
            .as_str()
            .unwrap()
            .contains("Matching Route: ^data/(?P<path>.*)$")
    );
    assert!(body["openapi"]["paths"]["/data/{path}"].is_object());
    assert!(matches!(
        help(None, "secret/data/app"),
        Err(Error::Unauthenticated)
    ));
    assert!(matches!(
        help(Some(&t), "nomount/x"),
        Err(Error::NoRoute(_))
    ));
    let logged: Vec<Value> = lines(&file)
        .into_iter()
        .filter(|l| l["request"]["path"] == "secret/data/app")
        .collect();
    // One request and one response entry for each of the two help calls.
    assert_eq!(logged.len(), 4, "{logged:?}");
}

/// With an audit device every request stores its chain heads (an fsync) before the
/// answer, reads and transit's computations included: a server must run them where
/// blocking is allowed.
#[test]
fn every_request_may_write_once_an_audit_device_is_enabled() {
    let (v, t) = dev();
    call(
        &v,
        &t,
        Update,
        "sys/mounts/transit",
        json!({"type": "transit"}),
    )
    .unwrap();
    call(&v, &t, Update, "transit/keys/k", json!({})).unwrap();
    let read = Request::new(Read, "secret/data/x");
    let decrypt = Request::new(Update, "transit/decrypt/k");
    let write = Request::new(Update, "secret/data/x");
    assert!(!v.may_write(&read) && !v.may_write(&decrypt) && v.may_write(&write));
    let dir = tempfile::tempdir().unwrap();
    enable_file(&v, &t, "file", &dir.path().join("audit.log"), json!({}));
    assert!(v.may_write(&read) && v.may_write(&decrypt) && v.may_write(&write));
}
