//! `lockana project ...`, `lockana env` and `lockana run`: projects and their
//! variables, unlocked by a one-time TOTP code.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::client::{ApiError, Client};
use super::{ClientArgs, Format};

pub(crate) const PROJECT_EXAMPLES: &str = "\
Examples:
  $ lockana project create billing --owner ops@example.com
  $ vault kv put -mount=secret projects/billing DB_URL=postgres://... API_KEY=...
  $ lockana env --project billing --code 123456
  $ lockana run --project billing --code 123456 -- ./server --port 8080";

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
        } => {
            let mut body = serde_json::Map::new();
            if let Some(o) = owner {
                body.insert("owner".into(), json!(o));
            }
            if let Some(m) = mount {
                body.insert("mount".into(), json!(m));
            }
            let (_, resp) = client.call("POST", &path(&name), Some(&Value::Object(body)))?;
            let resp = resp.context("the server answered without a body")?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&resp)?);
            } else if resp["data"].get("otpauth_url").is_none() {
                println!("Project {name:?} exists: updated.");
                print_fields(&resp["data"]);
            } else {
                print_seed(&name, &resp["data"], no_qr, true);
            }
        }
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
    if created {
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
    let warnings = v["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().map(str::to_owned))
        .collect();
    Ok((vars, warnings))
}

pub(crate) fn run_env(args: EnvArgs) -> anyhow::Result<ExitCode> {
    let text = fetch(&args.conn, args.format)?;
    match args.format {
        EnvFormat::Dotenv => print!("{text}"),
        EnvFormat::Json => {
            let (vars, warnings) = parse_env(&text)?;
            for w in warnings {
                eprintln!("Warning: {w}");
            }
            println!("{}", serde_json::to_string_pretty(&vars)?);
        }
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
    let (vars, warnings) = parse_env(&fetch(&args.conn, EnvFormat::Json)?)?;
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
