//! `lockana user add|list|remove|passwd`: Lockana's users with roles, on top of the
//! `userpass` auth method (a role is one of the built-in policies `lockana-reader`,
//! `lockana-manager`, `lockana-admin`).

use std::io::BufRead;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::ClientArgs;
use super::client::{ApiError, Client};

pub(crate) const EXAMPLES: &str = "\
Examples:
  $ export VAULT_ADDR=https://vault.example:8200 VAULT_TOKEN=...   # an admin's token
  $ lockana user add alice --role reader            # prompts for the password
  $ printf '%s\\n' \"$PW\" | lockana user add ci-bot --role manager --password-stdin
  $ lockana user list
  $ lockana user passwd alice
  $ lockana user remove alice

Users log in with any Vault client, e.g. `vault login -method=userpass username=alice`
or `curl -X POST $VAULT_ADDR/v1/auth/userpass/login/alice -d '{\"password\":\"...\"}'`.";

/// `lockana user` flags.
#[derive(Debug, Args)]
pub(crate) struct UserArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Path of the userpass auth method (enabled on first `add` if missing).
    #[arg(long, global = true, default_value = "userpass", value_name = "PATH")]
    mount: String,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user (or change an existing user's role and password).
    #[command(after_help = "\
Examples:
  $ lockana user add alice --role reader
  $ lockana user add bob --role admin --password-stdin < bob.pw")]
    Add {
        /// The user name (case-insensitive; stored lower-case).
        name: String,
        /// What the user may do.
        #[arg(long, value_enum, default_value_t = Role::Reader)]
        role: Role,
        /// Read the password from the first line of standard input instead of
        /// prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users with their roles.
    List,
    /// Delete a user. Tokens they already hold stay valid until they expire.
    Remove {
        /// The user name.
        name: String,
    },
    /// Set a user's password.
    Passwd {
        /// The user name.
        name: String,
        /// Read the password from the first line of standard input instead of
        /// prompting.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// Lockana's roles, each a built-in policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    /// Read and list secrets (policy `lockana-reader`).
    Reader,
    /// Manage secrets, projects and users below admin (policy `lockana-manager`).
    Manager,
    /// Everything but root-only operations (policy `lockana-admin`).
    Admin,
}

impl Role {
    pub(crate) fn policy(self) -> &'static str {
        match self {
            Role::Reader => "lockana-reader",
            Role::Manager => "lockana-manager",
            Role::Admin => "lockana-admin",
        }
    }

    fn from_policies(policies: &[String]) -> Option<Role> {
        // The strongest role wins if someone attached several.
        [Role::Admin, Role::Manager, Role::Reader]
            .into_iter()
            .find(|r| policies.iter().any(|p| p == r.policy()))
    }

    fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }
}

pub(crate) fn run(args: &UserArgs) -> anyhow::Result<std::process::ExitCode> {
    let client = Client::new(&args.client)?;
    let mount = args.mount.trim_matches('/');
    if mount.is_empty() || mount.contains("..") {
        bail!("--mount must name an auth path such as \"userpass\"");
    }
    match &args.command {
        UserCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            check_name(name)?;
            ensure_userpass(&client, mount)?;
            let password = read_password(*password_stdin, true)?;
            let body = json!({
                "password": password.as_str(),
                "token_policies": [role.policy()],
            });
            client.call(
                "POST",
                &format!("auth/{mount}/users/{}", enc(name)),
                Some(&body),
            )?;
            println!(
                "Success! User {:?} has role {} (policy {}).",
                name.trim().to_lowercase(),
                role.name(),
                role.policy()
            );
        }
        UserCommand::List => list(&client, mount, args.client.format)?,
        UserCommand::Remove { name } => {
            check_name(name)?;
            require_user(&client, mount, name)?;
            client.call("DELETE", &format!("auth/{mount}/users/{}", enc(name)), None)?;
            println!("Success! Removed user {:?}.", name.trim().to_lowercase());
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            check_name(name)?;
            require_user(&client, mount, name)?;
            let password = read_password(*password_stdin, true)?;
            let body = json!({"password": password.as_str()});
            client.call(
                "POST",
                &format!("auth/{mount}/users/{}/password", enc(name)),
                Some(&body),
            )?;
            println!(
                "Success! Password changed for {:?}.",
                name.trim().to_lowercase()
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let n = name.trim();
    if n.is_empty() || n.contains('/') || n.contains("..") || n.chars().any(char::is_control) {
        bail!("invalid user name {name:?}");
    }
    Ok(())
}

/// A user name as one URL path segment.
fn enc(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name.trim(), percent_encoding::NON_ALPHANUMERIC)
        .to_string()
}

fn not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>()
        .is_some_and(|a| a.status == 404)
}

fn require_user(client: &Client, mount: &str, name: &str) -> anyhow::Result<()> {
    match client.call("GET", &format!("auth/{mount}/users/{}", enc(name)), None) {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => bail!("no user {name:?} on auth/{mount}/"),
        Err(e) => Err(e),
    }
}

/// Enables the userpass method at `mount` unless something is mounted there already.
fn ensure_userpass(client: &Client, mount: &str) -> anyhow::Result<()> {
    let (_, body) = client.call("GET", "sys/auth", None)?;
    let key = format!("{mount}/");
    let existing = body
        .as_ref()
        .and_then(|b| b.get("data").or(Some(b)))
        .and_then(|d| d.get(&key))
        .and_then(|m| m.get("type"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    match existing.as_deref() {
        Some("userpass") => Ok(()),
        Some(other) => bail!("auth/{mount}/ is a {other:?} auth method, not userpass"),
        None => {
            client.call(
                "POST",
                &format!("sys/auth/{mount}"),
                Some(&json!({"type": "userpass", "description": "Lockana users"})),
            )?;
            eprintln!("Enabled the userpass auth method at auth/{mount}/.");
            Ok(())
        }
    }
}

fn list(client: &Client, mount: &str, format: super::Format) -> anyhow::Result<()> {
    let names: Vec<String> =
        match client.call("GET", &format!("auth/{mount}/users?list=true"), None) {
            Ok((_, body)) => body
                .as_ref()
                .and_then(|b| b.pointer("/data/keys"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            Err(e) if not_found(&e) => Vec::new(),
            Err(e) => return Err(e),
        };
    let mut rows = Vec::with_capacity(names.len());
    for n in names {
        let (_, body) = client.call("GET", &format!("auth/{mount}/users/{}", enc(&n)), None)?;
        let policies: Vec<String> = body
            .as_ref()
            .and_then(|b| b.pointer("/data/token_policies"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        rows.push((n, policies));
    }
    if format == super::Format::Json {
        let out: Vec<Value> = rows
            .iter()
            .map(|(n, p)| {
                json!({"name": n, "role": Role::from_policies(p).map(Role::name), "policies": p})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("No users.");
        return Ok(());
    }
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(4).max(4);
    println!("{:<width$}  {:<8}  Policies", "Name", "Role");
    for (n, p) in &rows {
        let role = Role::from_policies(p).map_or("-", Role::name);
        println!("{n:<width$}  {role:<8}  {}", p.join(","));
    }
    Ok(())
}

/// The new password: the first line of stdin, or prompted twice without echo.
fn read_password(from_stdin: bool, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    let pw = if from_stdin {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        let pw = Zeroizing::new(
            rpassword::prompt_password("Password (will be hidden): ")
                .context("reading the password (use --password-stdin without a terminal)")?,
        );
        if confirm {
            let again = Zeroizing::new(rpassword::prompt_password("Confirm password: ")?);
            if *again != *pw {
                bail!("the passwords do not match");
            }
        }
        pw
    };
    if pw.is_empty() {
        bail!("the password must not be empty");
    }
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_map_to_builtin_policies() {
        assert_eq!(Role::Reader.policy(), "lockana-reader");
        assert_eq!(Role::Manager.policy(), "lockana-manager");
        assert_eq!(Role::Admin.policy(), "lockana-admin");
        let p = vec!["default".to_owned(), "lockana-manager".to_owned()];
        assert_eq!(Role::from_policies(&p), Some(Role::Manager));
        assert_eq!(Role::from_policies(&["x".to_owned()]), None);
    }

    #[test]
    fn names_with_path_tricks_are_refused() {
        assert!(check_name("alice").is_ok());
        for bad in ["", " ", "a/b", "..", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
