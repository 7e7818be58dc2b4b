//! `lockana operator init | unseal | seal | status` (and `rekey`, `generate-root` in
//! `operator_keys`), over HTTP like the vault CLI.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::client::Client;
use super::{ClientArgs, Format, OperatorCommand, SnapshotCommand};

/// Exit code of `operator status` for a sealed server (as `vault status`).
const EXIT_SEALED: u8 = 2;

pub(super) fn run(args: &ClientArgs, command: OperatorCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(args)?;
    match command {
        OperatorCommand::Init {
            key_shares,
            key_threshold,
            cipher,
        } => init(
            &client,
            args.format,
            key_shares,
            key_threshold,
            cipher.map(|c| c.as_str()),
        ),
        OperatorCommand::Unseal { key, reset } => unseal(&client, args.format, key, reset),
        OperatorCommand::Seal => {
            client.call("PUT", "sys/seal", None)?;
            println!("Success! Vault is sealed.");
            Ok(ExitCode::SUCCESS)
        }
        OperatorCommand::StepDown => {
            client.call("PUT", "sys/step-down", None)?;
            println!("Success! Stepped down.");
            Ok(ExitCode::SUCCESS)
        }
        OperatorCommand::Status => status(&client, args.format),
        OperatorCommand::Rekey {
            key,
            init,
            cancel,
            status,
            verify,
            nonce,
            key_shares,
            key_threshold,
        } => super::operator_keys::rekey(
            &client,
            args.format,
            super::operator_keys::RekeyArgs {
                key,
                init,
                cancel,
                status,
                verify,
                nonce,
                key_shares,
                key_threshold,
            },
        ),
        OperatorCommand::GenerateRoot {
            key,
            init,
            cancel,
            status,
            nonce,
            decode,
            otp,
        } => super::operator_keys::generate_root(
            &client,
            args.format,
            super::operator_keys::GenerateRootArgs {
                key,
                init,
                cancel,
                status,
                nonce,
                decode,
                otp,
            },
        ),
        OperatorCommand::Snapshot(SnapshotCommand::Save { file }) => {
            super::snapshot::save(&client, &file)
        }
        OperatorCommand::Snapshot(SnapshotCommand::Restore { file, force }) => {
            super::snapshot::restore(&client, &file, force)
        }
        OperatorCommand::VerifyStorage {
            config,
            path,
            key_file,
            key_env,
        } => {
            let report = match (config, path) {
                (None, None) => verify_online(&client)?,
                (config, path) => verify_offline(config, path, key_file, key_env)?,
            };
            Ok(print_verify(&report, args.format)?)
        }
    }
}

/// What `verify-storage` found, online or offline.
struct VerifyReport {
    total: usize,
    checked: usize,
    /// (key, error) of each damaged entry.
    corrupt: Vec<(String, String)>,
    damage: Option<String>,
}

/// Exit code of `verify-storage` when it found damage.
const EXIT_DAMAGED: u8 = 2;

/// Writes the progress line (stderr, rewritten in place on a terminal).
fn progress(done: usize, total: usize) {
    let tty = std::io::stderr().is_terminal();
    if tty {
        eprint!("\rverifying storage: {done}/{total} entries");
        if done >= total {
            eprintln!();
        }
    } else if done >= total || done % 10_000 < 1000 {
        eprintln!("verifying storage: {done}/{total} entries");
    }
}

fn verify_online(client: &Client) -> anyhow::Result<VerifyReport> {
    let mut report = VerifyReport {
        total: 0,
        checked: 0,
        corrupt: Vec::new(),
        damage: None,
    };
    let mut after = Value::Null;
    loop {
        let (_, answer) = client.call(
            "PUT",
            "sys/storage/verify",
            Some(&json!({ "after": after, "limit": 1000 })),
        )?;
        let answer = answer.context("the server answered sys/storage/verify with an empty body")?;
        let data = answer.get("data").unwrap_or(&answer);
        report.total = data["total"].as_u64().unwrap_or(0) as usize;
        report.checked += data["checked"].as_u64().unwrap_or(0) as usize;
        for c in data["corrupt"].as_array().into_iter().flatten() {
            report.corrupt.push((
                c["key"].as_str().unwrap_or_default().to_owned(),
                c["error"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        progress(
            data["position"].as_u64().unwrap_or(0) as usize,
            report.total,
        );
        match data.get("next") {
            Some(Value::String(next)) => after = json!(next),
            _ => return Ok(report),
        }
    }
}

fn verify_offline(
    config: Option<std::path::PathBuf>,
    path: Option<std::path::PathBuf>,
    key_file: Option<std::path::PathBuf>,
    key_env: Option<String>,
) -> anyhow::Result<VerifyReport> {
    let (storage, configured) = match (config, path) {
        (Some(file), _) => {
            let c = lockana_server::Config::from_file(&file)?;
            (c.storage, c.auto_unseal)
        }
        (None, Some(p)) => (lockana::StorageConfig::Redb(p), None),
        (None, None) => unreachable!("online mode"),
    };
    let source = match (key_file, key_env) {
        (Some(f), _) => lockana_server::AutoUnseal::KeyFile(f),
        (None, Some(v)) => lockana_server::AutoUnseal::KeyEnv(v),
        (None, None) => configured.context(
            "offline verification needs the unseal key shares: give --key-file or --key-env (or an auto_unseal block in the config)",
        )?,
    };
    let shares = lockana_server::read_shares(&source)?;
    let shares: Vec<String> = shares.iter().map(|s| s.to_string()).collect();
    let result = lockana::Vault::verify_storage(storage, &shares, &mut progress);
    for mut s in shares {
        zeroize::Zeroize::zeroize(&mut s);
    }
    // A file that fails redb's own checks cannot be walked: that is damage found
    // (exit 2), not a failure of the command.
    if let Err(lockana::Error::Integrity(i)) = &result {
        return Ok(VerifyReport {
            total: 0,
            checked: 0,
            corrupt: Vec::new(),
            damage: Some(i.to_string()),
        });
    }
    let r = result.map_err(|e| match e {
        lockana::Error::Storage(lockana::StorageError::AlreadyOpen) => anyhow::anyhow!(
            "{e}; to check a running server, leave out --config/--path (online mode)"
        ),
        other => anyhow::anyhow!(other),
    })?;
    Ok(VerifyReport {
        total: r.total,
        checked: r.checked,
        corrupt: r
            .corrupt
            .iter()
            .map(|e| (e.key().unwrap_or_default().to_owned(), e.to_string()))
            .collect(),
        damage: r.damage,
    })
}

fn print_verify(r: &VerifyReport, format: Format) -> anyhow::Result<ExitCode> {
    let clean = r.corrupt.is_empty() && r.damage.is_none();
    if format == Format::Json {
        let corrupt: Vec<Value> = r
            .corrupt
            .iter()
            .map(|(k, e)| json!({"key": k, "error": e}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "total": r.total,
                "checked": r.checked,
                "corrupt": corrupt,
                "storage_damage": r.damage,
                "clean": clean,
            }))?
        );
    } else {
        if let Some(d) = &r.damage {
            println!("Storage file damaged: {d}");
        }
        for (key, error) in &r.corrupt {
            println!("CORRUPT {key}: {error}");
        }
        println!(
            "Checked {} of {} entries: {} corrupt.",
            r.checked,
            r.total,
            r.corrupt.len()
        );
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DAMAGED)
    })
}

fn init(
    client: &Client,
    format: Format,
    shares: u8,
    threshold: u8,
    cipher: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if threshold == 0 || shares == 0 {
        bail!("--key-shares and --key-threshold must be at least 1");
    }
    if threshold > shares {
        bail!("--key-threshold ({threshold}) cannot be larger than --key-shares ({shares})");
    }
    // With an auto-unseal seal (`seal "static"`, `seal "transit"`) the shares are
    // recovery keys, asked for by their own names, as `bao operator init` does.
    let (_, status) = client.call("GET", "sys/seal-status", None)?;
    let recovery = status
        .as_ref()
        .and_then(|s| s.get("recovery_seal"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut body = if recovery {
        json!({ "recovery_shares": shares, "recovery_threshold": threshold })
    } else {
        json!({ "secret_shares": shares, "secret_threshold": threshold })
    };
    if let (Some(cipher), Value::Object(map)) = (cipher, &mut body) {
        map.insert("cipher".into(), Value::String(cipher.into()));
    }
    let (_, answer) = client.call("PUT", "sys/init", Some(&body))?;
    let answer = answer.context("the server answered sys/init with an empty body")?;
    if recovery {
        return print_recovery_init(&answer, format, shares, threshold);
    }
    if format == Format::Json {
        // The field names of `vault operator init -format=json`, so scripts carry over.
        let vault_shape = json!({
            "unseal_keys_b64": answer.get("keys_base64"),
            "unseal_keys_hex": answer.get("keys"),
            "unseal_shares": shares,
            "unseal_threshold": threshold,
            "recovery_keys_b64": [],
            "recovery_keys_hex": [],
            "recovery_keys_shares": 0,
            "recovery_keys_threshold": 0,
            "root_token": answer.get("root_token"),
        });
        println!("{}", serde_json::to_string_pretty(&vault_shape)?);
        return Ok(ExitCode::SUCCESS);
    }
    let keys = answer
        .get("keys_base64")
        .or_else(|| answer.get("keys"))
        .and_then(Value::as_array)
        .context("the sys/init answer has no keys")?;
    let root = print_keys(&answer, "Unseal Key", keys);
    println!(
        "\nInitial Root Token: {root}\n\n\
Vault initialized with {shares} key shares and a key threshold of {threshold}. Please securely
distribute the key shares printed above. When the Vault is re-sealed,
restarted, or stopped, you must supply at least {threshold} of these keys to unseal it
before it can start servicing requests.

Vault does not store the generated root key. Without at least {threshold} keys to
reconstruct the root key, Vault will remain permanently sealed!

It is possible to generate new unseal keys, provided you have a quorum of
existing unseal keys shares. See \"bao operator rekey\" (or \"vault operator rekey\")."
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints `init`'s key shares as the CLI does (`<label> 1: ...`), and returns the
/// answer's root token for the text that follows.
fn print_keys<'a>(answer: &'a Value, label: &str, keys: &[Value]) -> &'a str {
    for (i, key) in keys.iter().enumerate() {
        println!("{label} {}: {}", i + 1, key.as_str().unwrap_or_default());
    }
    answer
        .get("root_token")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `operator init` against a vault with an auto-unseal seal: recovery keys.
fn print_recovery_init(
    answer: &Value,
    format: Format,
    shares: u8,
    threshold: u8,
) -> anyhow::Result<ExitCode> {
    if format == Format::Json {
        let vault_shape = json!({
            "unseal_keys_b64": [],
            "unseal_keys_hex": [],
            "unseal_shares": 1,
            "unseal_threshold": 1,
            "recovery_keys_b64": answer.get("recovery_keys_base64"),
            "recovery_keys_hex": answer.get("recovery_keys"),
            "recovery_keys_shares": shares,
            "recovery_keys_threshold": threshold,
            "root_token": answer.get("root_token"),
        });
        println!("{}", serde_json::to_string_pretty(&vault_shape)?);
        return Ok(ExitCode::SUCCESS);
    }
    let keys = answer
        .get("recovery_keys_base64")
        .and_then(Value::as_array)
        .context("the sys/init answer has no recovery keys")?;
    let root = print_keys(answer, "Recovery Key", keys);
    println!(
        "\nInitial Root Token: {root}\n\n\
Success! Vault is initialized

Recovery key initialized with {shares} key shares and a key threshold of {threshold}.
The vault unseals itself with its seal. Please securely distribute the key shares
printed above: with Lockana they also unseal the vault by hand (docs/operations.md)."
    );
    Ok(ExitCode::SUCCESS)
}

fn unseal(
    client: &Client,
    format: Format,
    key: Option<String>,
    reset: bool,
) -> anyhow::Result<ExitCode> {
    let body = if reset {
        json!({ "reset": true })
    } else {
        let key = match key {
            Some(key) => Zeroizing::new(key),
            None => prompt_key()?,
        };
        let key = key.trim();
        if key.is_empty() {
            bail!("no unseal key given");
        }
        json!({ "key": key })
    };
    let (_, answer) = client.call("PUT", "sys/unseal", Some(&body))?;
    let answer = answer.context("the server answered sys/unseal with an empty body")?;
    print_status(&answer, format)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn prompt_key() -> anyhow::Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Unseal Key (will be hidden): ")
            .map(Zeroizing::new)
            .context("reading the unseal key from the terminal")
    } else {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the unseal key from stdin")?;
        Ok(line)
    }
}

fn status(client: &Client, format: Format) -> anyhow::Result<ExitCode> {
    let (_, answer) = client.call("GET", "sys/seal-status", None)?;
    let answer = answer.context("the server answered sys/seal-status with an empty body")?;
    print_status(&answer, format)?;
    let sealed = answer
        .get("sealed")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Ok(if sealed {
        ExitCode::from(EXIT_SEALED)
    } else {
        ExitCode::SUCCESS
    })
}

/// `lockana health`: one line saying whether the server answers and in what state.
pub(super) fn health(args: &ClientArgs, require_unsealed: bool) -> anyhow::Result<ExitCode> {
    let client = Client::new(args)?;
    let (_, answer) = client.call("GET", "sys/seal-status", None)?;
    let flag = |key: &str| {
        answer
            .as_ref()
            .and_then(|a| a.get(key))
            .and_then(Value::as_bool)
            .with_context(|| {
                format!(
                    "{} answered, but not with a Vault seal status",
                    args.address
                )
            })
    };
    let (initialized, sealed) = (flag("initialized")?, flag("sealed")?);
    let state = match (initialized, sealed) {
        (false, _) => "not initialized",
        (true, true) => "sealed",
        (true, false) => "unsealed",
    };
    println!("{} answers: {state}", args.address);
    Ok(if require_unsealed && (sealed || !initialized) {
        ExitCode::from(EXIT_SEALED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints a seal status like `vault status` does.
fn print_status(status: &Value, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(status)?);
        return Ok(());
    }
    for (key, value) in status_rows(status) {
        println!("{key:<18} {value}");
    }
    Ok(())
}

fn status_rows(status: &Value) -> Vec<(&'static str, String)> {
    let field = |k: &str| -> Option<String> {
        match status.get(k)? {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    };
    let sealed = status
        .get("sealed")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut rows = vec![("Key", "Value".to_owned()), ("---", "-----".to_owned())];
    let mut push = |name: &'static str, value: Option<String>| {
        if let Some(v) = value {
            rows.push((name, v));
        }
    };
    push("Seal Type", field("type"));
    push("Initialized", field("initialized"));
    push("Sealed", field("sealed"));
    push("Total Shares", field("n"));
    push("Threshold", field("t"));
    if sealed {
        push(
            "Unseal Progress",
            Some(format!(
                "{}/{}",
                field("progress").unwrap_or_else(|| "0".into()),
                field("t").unwrap_or_else(|| "0".into())
            )),
        );
        push(
            "Unseal Nonce",
            Some(
                field("nonce")
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "n/a".into()),
            ),
        );
    }
    push("Version", field("version"));
    push("Build Date", field("build_date"));
    push("Storage Type", field("storage_type"));
    push("Cluster Name", field("cluster_name"));
    push("HA Enabled", field("ha_enabled"));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_status_shows_progress() {
        let rows = status_rows(&json!({
            "type": "shamir", "initialized": true, "sealed": true,
            "t": 3, "n": 5, "progress": 1, "nonce": "", "version": "0.1.0"
        }));
        assert!(rows.contains(&("Unseal Progress", "1/3".to_owned())));
        assert!(rows.contains(&("Unseal Nonce", "n/a".to_owned())));
        assert!(rows.contains(&("Seal Type", "shamir".to_owned())));
    }

    #[test]
    fn unsealed_status_hides_progress() {
        let rows = status_rows(&json!({"sealed": false, "t": 1, "n": 1}));
        assert!(!rows.iter().any(|(k, _)| *k == "Unseal Progress"));
        assert!(rows.contains(&("Sealed", "false".to_owned())));
    }
}
