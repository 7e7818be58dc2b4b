//! `lockana project ...`, `lockana env` and `lockana run`: projects and their
//! variables, unlocked by a one-time TOTP code.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use lockana::{ProjectEncryption, ProjectKey, ProjectKeyError};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::client::{ApiError, Client};
use super::{ClientArgs, Format};

pub(crate) const PROJECT_EXAMPLES: &str = "\
Examples:
  $ lockana project create billing --owner ops@example.com
  $ vault kv put -mount=secret projects/billing DB_URL=postgres://... API_KEY=...
  $ lockana env --project billing --code 123456
  $ lockana run --project billing --code 123456 -- ./server --port 8080

  RSA: values encrypted on this machine; the server never holds a key that opens them
  $ lockana project create payroll --encryption rsa-3072 --key-out payroll.pem
  $ lockana project set payroll DB_URL=postgres://... API_KEY     # API_KEY: prompted
  $ lockana run --project payroll --key payroll.pem -- ./server
  $ lockana project rotate-key payroll --key payroll.pem --new-key-out payroll-2.pem";

/// `lockana project` flags and subcommands.
#[derive(Debug, Args)]
pub(crate) struct ProjectArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ProjectCommand,
}

#[derive(Debug, Subcommand)]
enum ProjectCommand {
    /// Create a project: prints its TOTP seed (once) as an otpauth URL and a QR code.
    ///
    /// With `--encryption rsa-3072` or `rsa-4096` the key pair is generated here: the
    /// private key is written to `--key-out` (mode 0600) and printed once; the server
    /// gets only the public key. Values are then encrypted on the client (`project
    /// set`) and decrypted on the client (`env`/`run --key`), so neither the server
    /// nor anyone holding its storage and unseal keys can read them. Lose the private
    /// key and the values are lost.
    Create {
        /// Project name (lower-case letters, digits, '-', '_').
        name: String,
        /// Who owns the project (free text, e.g. an e-mail address).
        #[arg(long)]
        owner: Option<String>,
        /// KV version 2 mount holding the variables at `projects/<name>` (default: secret).
        #[arg(long)]
        mount: Option<String>,
        /// Do not print the QR code (the otpauth URL is still printed).
        #[arg(long)]
        no_qr: bool,
        /// How the variables are encrypted: chacha20 (the server's barrier; the
        /// default) or rsa-3072 / rsa-4096 (on the client, to a key only you hold).
        #[arg(long, value_enum, default_value_t = EncryptionArg::Chacha20)]
        encryption: EncryptionArg,
        /// RSA: where to write the new private key (default: ./<name>.pem); an
        /// existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        key_out: Option<PathBuf>,
    },
    /// Set variables: `KEY=value`, or `KEY` alone to be prompted (hidden). Other
    /// variables stay. In an RSA project each value is encrypted here, to the
    /// project's public key, before it is sent.
    Set {
        /// Project name.
        name: String,
        /// `KEY=value` (lands in shell history) or `KEY` (prompted for, hidden; without
        /// a terminal, one line of standard input).
        #[arg(required = true, value_name = "KEY[=VALUE]")]
        vars: Vec<String>,
    },
    /// RSA projects: replace the key pair. The variables are decrypted here with the
    /// current key, re-encrypted to a new key and written with the new public key in
    /// one step. Older KV versions stay encrypted to the old key: destroy them (vault
    /// kv destroy) if the old key may have leaked.
    RotateKey {
        /// Project name.
        name: String,
        /// The project's current private key.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where to write the new private key (never overwritten).
        #[arg(long, value_name = "FILE")]
        new_key_out: PathBuf,
        /// Size of the new key (default: the current one's).
        #[arg(long, value_enum)]
        encryption: Option<EncryptionArg>,
    },
    /// List projects.
    List,
    /// Show a project (never its seed).
    Show {
        /// Project name.
        name: String,
    },
    /// Delete a project and its policy (its variables stay in KV).
    Delete {
        /// Project name.
        name: String,
    },
    /// Issue a new TOTP seed; codes from the old one stop working.
    RotateTotp {
        /// Project name.
        name: String,
        /// Do not print the QR code.
        #[arg(long)]
        no_qr: bool,
    },
}

/// How `env` and `run` reach the server and which code they present (no token: the
/// code is the credential).
#[derive(Debug, Args)]
pub(crate) struct CodeArgs {
    /// Server address.
    #[arg(
        long,
        env = "VAULT_ADDR",
        default_value = "http://127.0.0.1:8200",
        value_name = "URL"
    )]
    address: String,
    /// PEM file with the CA certificate(s) that signed the server's certificate.
    #[arg(long, env = "VAULT_CACERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Do not verify the server's TLS certificate (insecure; for testing only).
    #[arg(long, env = "VAULT_SKIP_VERIFY")]
    tls_skip_verify: bool,
    /// Project name.
    #[arg(long, env = "LOCKANA_PROJECT")]
    project: String,
    /// The current code from the project's authenticator (prompted for if omitted).
    #[arg(long, env = "LOCKANA_TOTP_CODE", hide_env_values = true)]
    code: Option<String>,
    /// RSA projects: the private key file (from `project create`); the values are
    /// decrypted here, after the code is accepted.
    #[arg(long, env = "LOCKANA_PROJECT_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
}

/// `--encryption` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum EncryptionArg {
    /// The server's barrier cipher (it can read the values once unsealed).
    Chacha20,
    /// Client-side, to a 3072-bit RSA key only the project's users hold.
    #[value(name = "rsa-3072")]
    Rsa3072,
    /// Client-side, to a 4096-bit RSA key only the project's users hold.
    #[value(name = "rsa-4096")]
    Rsa4096,
}

impl EncryptionArg {
    fn get(self) -> ProjectEncryption {
        match self {
            EncryptionArg::Chacha20 => ProjectEncryption::ChaCha20,
            EncryptionArg::Rsa3072 => ProjectEncryption::Rsa3072,
            EncryptionArg::Rsa4096 => ProjectEncryption::Rsa4096,
        }
    }
}

/// `lockana env` flags.
#[derive(Debug, Args)]
pub(crate) struct EnvArgs {
    #[command(flatten)]
    conn: CodeArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = EnvFormat::Dotenv)]
    format: EnvFormat,
}

/// Formats of `lockana env`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum EnvFormat {
    /// `NAME='value'` lines a POSIX shell can source (`set -a; . ./.env; set +a`).
    Dotenv,
    /// A JSON object of names to values.
    Json,
}

/// `lockana run` flags.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    conn: CodeArgs,
    /// The command to run, after `--`, with its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

pub(crate) fn run_project(args: ProjectArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    let json_out = args.client.format == Format::Json;
    let path = |name: &str| format!("lockana/projects/{name}");
    match args.command {
        ProjectCommand::Create {
            name,
            owner,
            mount,
            no_qr,
            encryption,
            key_out,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(o) = owner {
                body.insert("owner".into(), json!(o));
            }
            if let Some(m) = mount {
                body.insert("mount".into(), json!(m));
            }
            let encryption = encryption.get();
            body.insert("encryption".into(), json!(encryption.as_str()));
            let key = if encryption.is_rsa() {
                let file = key_out.unwrap_or_else(|| PathBuf::from(format!("{name}.pem")));
                let key = ProjectKey::generate(encryption)?;
                write_key_file(&file, &key)?;
                body.insert("public_key".into(), json!(key.public_key().to_pem()));
                Some((key, file))
            } else {
                if key_out.is_some() {
                    bail!("--key-out is for RSA projects (--encryption rsa-3072 or rsa-4096)");
                }
                None
            };
            let answer = client.call("POST", &path(&name), Some(&Value::Object(body)));
            let resp = match answer {
                Ok((_, resp)) => resp.context("the server answered without a body")?,
                Err(e) => {
                    if let Some((_, file)) = &key {
                        // The server kept nothing: the key opens nothing.
                        let _ = std::fs::remove_file(file);
                    }
                    return Err(e);
                }
            };
            if json_out {
                let mut resp = resp;
                if let (Some((key, file)), Some(d)) = (&key, resp["data"].as_object_mut()) {
                    d.insert("private_key".into(), json!(key.to_pem().as_str()));
                    d.insert("private_key_file".into(), json!(file.display().to_string()));
                }
                println!("{}", serde_json::to_string_pretty(&resp)?);
            } else if resp["data"].get("otpauth_url").is_none() {
                println!("Project {name:?} exists: updated.");
                print_fields(&resp["data"]);
            } else {
                print_seed(&name, &resp["data"], no_qr, true);
                if let Some((key, file)) = &key {
                    print_private_key(&name, key, file);
                }
            }
        }
        ProjectCommand::Set { name, vars } => set_variables(&client, &name, &vars)?,
        ProjectCommand::RotateKey {
            name,
            key,
            new_key_out,
            encryption,
        } => rotate_key(&client, &name, &key, &new_key_out, encryption)?,
        ProjectCommand::RotateTotp { name, no_qr } => {
            let (_, resp) = client.call("POST", &format!("{}/rotate-totp", path(&name)), None)?;
            let resp = resp.context("the server answered without a body")?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&resp)?);
            } else {
                print_seed(&name, &resp["data"], no_qr, false);
            }
        }
        ProjectCommand::List => match client.call("GET", "lockana/projects?list=true", None) {
            Ok((_, resp)) => {
                let resp = resp.unwrap_or(Value::Null);
                if json_out {
                    println!("{}", serde_json::to_string_pretty(&resp)?);
                } else {
                    for k in resp["data"]["keys"].as_array().into_iter().flatten() {
                        println!("{}", k.as_str().unwrap_or_default());
                    }
                }
            }
            Err(e)
                if e.downcast_ref::<ApiError>()
                    .is_some_and(|a| a.status == 404) =>
            {
                if json_out {
                    println!("{}", json!({"data": {"keys": []}}));
                } else {
                    eprintln!("No projects.");
                }
            }
            Err(e) => return Err(e),
        },
        ProjectCommand::Show { name } => {
            let (_, resp) = client.call("GET", &path(&name), None)?;
            let resp = resp.unwrap_or(Value::Null);
            if json_out {
                println!("{}", serde_json::to_string_pretty(&resp)?);
            } else {
                print_fields(&resp["data"]);
            }
        }
        ProjectCommand::Delete { name } => {
            client.call("DELETE", &path(&name), None)?;
            println!("Success! Deleted project {name:?} (its variables stay in KV).");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_fields(data: &Value) {
    let Some(m) = data.as_object() else { return };
    let width = m.keys().map(String::len).max().unwrap_or(0);
    for (k, v) in m {
        let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        println!("{k:<width$}    {v}");
    }
}

fn print_seed(name: &str, data: &Value, no_qr: bool, created: bool) {
    let url = data["otpauth_url"].as_str().unwrap_or_default();
    let mount = data["mount"].as_str().unwrap_or("secret");
    if created {
        println!("Project {name:?} created.");
    } else {
        println!("Project {name:?}: new TOTP seed issued; codes from the old one no longer work.");
    }
    println!(
        "\nScan this QR code with an authenticator app (or enter the otpauth URL).\nThe seed is shown only now.\n"
    );
    if !no_qr {
        match terminal_qr(url) {
            Some(qr) => println!("{qr}"),
            None => eprintln!("(the URL is too long for a terminal QR code)"),
        }
    }
    println!("{url}\n");
    if created && data["encryption"].as_str().is_some_and(|e| e != "chacha20") {
        println!("Add variables:  lockana project set {name} KEY=value ...");
        println!("Fetch them:     lockana env --project {name} --key <key file> --code <code>");
        println!(
            "Run with them:  lockana run --project {name} --key <key file> --code <code> -- <command>"
        );
    } else if created {
        println!("Add variables:  vault kv put -mount={mount} projects/{name} KEY=value ...");
        println!("Fetch them:     lockana env --project {name} --code <code>");
        println!("Run with them:  lockana run --project {name} --code <code> -- <command>");
    }
}

/// A QR code drawn with half blocks, two rows per line. Light modules are drawn in
/// the foreground colour: right on the usual light-on-dark terminal.
pub(crate) fn terminal_qr(text: &str) -> Option<String> {
    let qr = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Low).ok()?;
    let border = 2;
    let size = qr.size();
    let mut out = String::new();
    let mut y = -border;
    while y < size + border {
        for x in -border..size + border {
            let (top, bottom) = (qr.get_module(x, y), qr.get_module(x, y + 1));
            out.push(match (top, bottom) {
                (false, false) => '█',
                (false, true) => '▀',
                (true, false) => '▄',
                (true, true) => ' ',
            });
        }
        out.push('\n');
        y += 2;
    }
    Some(out)
}

fn code_of(conn: &CodeArgs) -> anyhow::Result<String> {
    match &conn.code {
        Some(c) => Ok(c.clone()),
        None => rpassword::prompt_password(format!("TOTP code for project {}: ", conn.project))
            .context("reading the code (pass --code or LOCKANA_TOTP_CODE)"),
    }
}

/// The project's variables and the server's warnings: fetched as JSON, decrypted
/// here with `--key` when the project is an RSA project.
fn fetch_vars(conn: &CodeArgs) -> anyhow::Result<(BTreeMap<String, String>, Vec<String>)> {
    // The key is read before the code is spent on the request.
    let key = conn.key.as_deref().map(read_key_file).transpose()?;
    let text = fetch(conn, EnvFormat::Json)?;
    let v: Value = serde_json::from_str(&text).context("the server's answer is not JSON")?;
    let data = v["data"].as_object().cloned().unwrap_or_default();
    let (vars, warnings) = match key {
        Some(key) => (key.open_variables(&conn.project, &data)?, warnings_of(&v)),
        None if lockana::has_envelopes(&data) => {
            return Err(anyhow::Error::new(ProjectKeyError::KeyNeeded)
                .context("pass --key FILE (or set LOCKANA_PROJECT_KEY)"));
        }
        None => parse_env(&text)?,
    };
    Ok((vars, warnings))
}

fn fetch(conn: &CodeArgs, format: EnvFormat) -> anyhow::Result<String> {
    let client = Client::new(&ClientArgs {
        address: conn.address.clone(),
        token: None,
        ca_cert: conn.ca_cert.clone(),
        tls_skip_verify: conn.tls_skip_verify,
        format: Format::Table,
    })?;
    let code = code_of(conn)?;
    let project: String =
        percent_encoding::utf8_percent_encode(&conn.project, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let mut path = format!("lockana/projects/{project}/env");
    if format == EnvFormat::Dotenv {
        path.push_str("?format=dotenv");
    }
    client
        .call_text("GET", &path, &[("X-Lockana-TOTP", code.trim())], false)
        .map_err(|e| match e.downcast_ref::<ApiError>() {
            Some(a) if a.status == 403 => anyhow::anyhow!(
                "{a}\n\nThe code was refused: it may be wrong, already used (each code works once: wait for the next one), or the project is locked out after failed attempts (15 minutes)."
            ),
            _ => e,
        })
}

/// The variables of a JSON env answer, and its warnings.
fn parse_env(text: &str) -> anyhow::Result<(BTreeMap<String, String>, Vec<String>)> {
    let v: Value = serde_json::from_str(text).context("the server's answer is not JSON")?;
    let mut vars = BTreeMap::new();
    for (k, val) in v["data"].as_object().into_iter().flatten() {
        let s = val.as_str().context("a variable's value is not a string")?;
        vars.insert(k.clone(), s.to_owned());
    }
    Ok((vars, warnings_of(&v)))
}

fn warnings_of(v: &Value) -> Vec<String> {
    v["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().map(str::to_owned))
        .collect()
}

pub(crate) fn run_env(args: EnvArgs) -> anyhow::Result<ExitCode> {
    if args.conn.key.is_none() && args.format == EnvFormat::Dotenv {
        // The server's own dotenv text (it refuses RSA projects: they need --key).
        print!("{}", fetch(&args.conn, args.format)?);
        return Ok(ExitCode::SUCCESS);
    }
    let (vars, warnings) = fetch_vars(&args.conn)?;
    for w in warnings {
        eprintln!("Warning: {w}");
    }
    match args.format {
        EnvFormat::Dotenv => print!("{}", lockana::dotenv(&vars)),
        EnvFormat::Json => println!("{}", serde_json::to_string_pretty(&vars)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the command with the project's variables added to its environment; they
/// are never written to disk. Exits with the command's status (128 + signal if it
/// was killed).
pub(crate) fn run_command(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (program, rest) = args
        .command
        .split_first()
        .context("no command given after --")?;
    let (vars, warnings) = fetch_vars(&args.conn)?;
    for w in warnings {
        eprintln!("Warning: {w}");
    }
    let status = std::process::Command::new(program)
        .args(rest)
        .envs(&vars)
        .status()
        .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
    drop(vars);
    if let Some(code) = status.code() {
        return Ok(ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)));
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return Ok(ExitCode::from(u8::try_from(128 + sig).unwrap_or(1)));
        }
    }
    bail!("the command ended without an exit status")
}

/// Writes a new private key file: never over an existing file, mode 0600 from the
/// start, synced before the server hears of the key.
fn write_key_file(file: &Path, key: &ProjectKey) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(file).with_context(|| {
        format!(
            "cannot create the key file {} (an existing file is never overwritten)",
            file.display()
        )
    })?;
    f.write_all(key.to_pem().as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing the key file {}", file.display()))
}

/// Reads a private key file; warns when others may read it.
fn read_key_file(file: &Path) -> anyhow::Result<ProjectKey> {
    let text = Zeroizing::new(
        std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the key file {}", file.display()))?,
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(file).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            eprintln!(
                "Warning: {} can be read by other users: chmod 600 it",
                file.display()
            );
        }
    }
    ProjectKey::from_pem(&text).with_context(|| format!("the key file {}", file.display()))
}

fn print_private_key(name: &str, key: &ProjectKey, file: &Path) {
    println!(
        "Private key written to {} (mode 0600). It is shown only now:\n",
        file.display()
    );
    print!("{}", key.to_pem().as_str());
    println!(
        "\nWARNING: the server does not have this key and cannot recover it. Without it the\n\
         variables of {name:?} are lost: keep a copy somewhere safe, give it only to the\n\
         people and machines that need the values, and never commit it."
    );
}

/// A project as `project set` and `rotate-key` need it.
struct ProjectInfo {
    mount: String,
    public_key: Option<lockana::ProjectPublicKey>,
}

fn project_info(client: &Client, name: &str) -> anyhow::Result<ProjectInfo> {
    let (_, resp) = client.call("GET", &format!("lockana/projects/{name}"), None)?;
    let data = resp.map(|r| r["data"].clone()).unwrap_or(Value::Null);
    let mount = data["mount"].as_str().unwrap_or("secret").to_owned();
    let public_key = match data["public_key"].as_str() {
        Some(pem) => Some(lockana::ProjectPublicKey::from_pem(pem)?),
        None => None,
    };
    Ok(ProjectInfo { mount, public_key })
}

/// The secret's current version (0: none) and its data; a deleted or destroyed
/// current version reads as empty.
fn read_current(
    client: &Client,
    mount: &str,
    name: &str,
) -> anyhow::Result<(u64, Map<String, Value>)> {
    let not_found = |e: &anyhow::Error| {
        e.downcast_ref::<ApiError>()
            .is_some_and(|a| a.status == 404)
    };
    let version = match client.call("GET", &format!("{mount}/metadata/projects/{name}"), None) {
        Ok((_, resp)) => resp
            .and_then(|r| r["data"]["current_version"].as_u64())
            .unwrap_or(0),
        Err(e) if not_found(&e) => 0,
        Err(e) => return Err(e),
    };
    if version == 0 {
        return Ok((0, Map::new()));
    }
    let path = format!("{mount}/data/projects/{name}?version={version}");
    match client.call("GET", &path, None) {
        Ok((_, resp)) => Ok((
            version,
            resp.and_then(|r| r["data"]["data"].as_object().cloned())
                .unwrap_or_default(),
        )),
        Err(e) if not_found(&e) => Ok((version, Map::new())),
        Err(e) => Err(e),
    }
}

fn set_variables(client: &Client, name: &str, vars: &[String]) -> anyhow::Result<()> {
    let info = project_info(client, name)?;
    let mut new = BTreeMap::new();
    for arg in vars {
        let (k, v) = match arg.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (arg.clone(), read_value(arg)?),
        };
        if k.is_empty() {
            bail!("a variable needs a name: KEY=value");
        }
        new.insert(k, v);
    }
    let mount = info.mount.trim_end_matches('/');
    let (version, mut data) = read_current(client, mount, name)?;
    let sealed = match &info.public_key {
        Some(key) => key.seal_variables(name, &new)?,
        None => new.iter().map(|(k, v)| (k.clone(), json!(v))).collect(),
    };
    data.extend(sealed);
    let body = json!({"data": data, "options": {"cas": version}});
    let (_, resp) = client.call(
        "POST",
        &format!("{mount}/data/projects/{name}"),
        Some(&body),
    )?;
    let written = resp
        .and_then(|r| r["data"]["version"].as_u64())
        .unwrap_or(0);
    let how = if info.public_key.is_some() {
        "encrypted here to the project's public key"
    } else {
        "stored by the server"
    };
    println!(
        "Success! Set {} variable(s) of project {name:?} ({how}); version {written}.",
        new.len()
    );
    Ok(())
}

/// A value not given on the command line: prompted for (hidden) on a terminal,
/// otherwise one line of standard input (`printf %s "$V" | lockana project set p KEY`).
fn read_value(name: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal as _;
    let context = || format!("reading the value of {name}");
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("Value of {name}: ")).with_context(context);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .with_context(context)?;
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
}

fn rotate_key(
    client: &Client,
    name: &str,
    key_file: &Path,
    new_key_out: &Path,
    encryption: Option<EncryptionArg>,
) -> anyhow::Result<()> {
    let info = project_info(client, name)?;
    let Some(current) = info.public_key else {
        bail!("project {name:?} is not an RSA project: it has no key to rotate");
    };
    let old = read_key_file(key_file)?;
    if old.public_key().key_id() != current.key_id() {
        return Err(anyhow::Error::new(ProjectKeyError::WrongKey)
            .context(format!("the key in {}", key_file.display())));
    }
    let mount = info.mount.trim_end_matches('/');
    let (version, data) = read_current(client, mount, name)?;
    let vars = old.open_variables(name, &data)?;
    let size = encryption.map_or(current.encryption(), EncryptionArg::get);
    if !size.is_rsa() {
        bail!("--encryption must be rsa-3072 or rsa-4096: an RSA project stays RSA");
    }
    let new = ProjectKey::generate(size)?;
    let resealed = new.public_key().seal_variables(name, &vars)?;
    drop(vars);
    write_key_file(new_key_out, &new)?;
    let body = json!({"public_key": new.public_key().to_pem(), "data": resealed, "cas": version});
    if let Err(e) = client.call(
        "POST",
        &format!("lockana/projects/{name}/rotate-key"),
        Some(&body),
    ) {
        let _ = std::fs::remove_file(new_key_out);
        return Err(e.context("the key was not rotated (the old key still works)"));
    }
    println!(
        "Success! Project {name:?} now uses the key in {} (key id {}); its {} variable(s) were re-encrypted.",
        new_key_out.display(),
        new.public_key().key_id(),
        resealed.len()
    );
    println!(
        "The old key opens only older versions now: destroy them (vault kv destroy -mount={mount} -versions=... projects/{name}) if it may have leaked."
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_qr_is_square_ish() {
        let qr = terminal_qr("otpauth://totp/Lockana:p?secret=GEZDGNBVGY3TQOJQ").expect("qr");
        let lines: Vec<&str> = qr.lines().collect();
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width));
        assert_eq!(lines.len(), width.div_ceil(2));
    }

    #[test]
    fn env_json_is_parsed_with_warnings() {
        let (vars, warnings) =
            parse_env(r#"{"data": {"A": "1", "B": "x y"}, "warnings": ["left out 1 key(s)"]}"#)
                .expect("parse");
        assert_eq!(vars["B"], "x y");
        assert_eq!(warnings.len(), 1);
        assert!(parse_env(r#"{"data": {"A": 1}}"#).is_err());
    }
}
