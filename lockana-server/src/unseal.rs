//! Auto-unseal: submit unseal key shares from a file or an environment variable at start.

use std::path::PathBuf;

use lockana::{SealStatus, Vault};
use zeroize::Zeroizing;

use crate::ServerError;

/// Where the unseal key shares for auto-unseal come from. The shares (hex or base64)
/// are separated by newlines or commas; blank lines and `#` comments are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoUnseal {
    /// A file holding the shares (keep it readable by the server's user only).
    KeyFile(PathBuf),
    /// The name of an environment variable holding the shares.
    KeyEnv(String),
}

impl AutoUnseal {
    /// Reads the shares. The text is zeroized when dropped.
    fn read(&self) -> Result<Zeroizing<String>, ServerError> {
        match self {
            AutoUnseal::KeyFile(path) => {
                std::fs::read_to_string(path)
                    .map(Zeroizing::new)
                    .map_err(|e| {
                        ServerError::AutoUnseal(format!(
                            "cannot read auto_unseal key_file {}: {e}",
                            path.display()
                        ))
                    })
            }
            AutoUnseal::KeyEnv(var) => std::env::var(var).map(Zeroizing::new).map_err(|_| {
                ServerError::AutoUnseal(format!(
                    "auto_unseal key_env: the environment variable {var} is not set (or not UTF-8)"
                ))
            }),
        }
    }
}

/// Splits share text into shares (newline- or comma-separated, `#` comments skipped).
fn shares(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The shares `source` holds (for offline tools such as `verify-storage`).
pub fn read_shares(source: &AutoUnseal) -> Result<Vec<Zeroizing<String>>, ServerError> {
    let text = source.read()?;
    Ok(shares(&text)
        .into_iter()
        .map(|s| Zeroizing::new(s.to_owned()))
        .collect())
}

/// Unseals `vault` with the configured shares when it is initialized and sealed.
///
/// An uninitialized vault is left alone (it needs `lockana operator init` first); an
/// unsealed one too. Fails if a share is rejected or the shares do not reach the
/// threshold. Blocking: storage is read while unsealing.
pub fn auto_unseal(vault: &Vault, source: &AutoUnseal) -> Result<SealStatus, ServerError> {
    let status = vault.seal_status();
    if !status.initialized {
        tracing::warn!(
            "vault is not initialized; auto-unseal skipped (run `lockana operator init`)"
        );
        return Ok(status);
    }
    if !status.sealed {
        return Ok(status);
    }
    let text = source.read()?;
    let shares = shares(&text);
    if shares.is_empty() {
        return Err(ServerError::AutoUnseal(
            "auto_unseal: no unseal key shares found (one per line, or comma-separated)".into(),
        ));
    }
    let mut status = status;
    for (i, share) in shares.iter().enumerate() {
        status = vault.unseal(share).map_err(|e| {
            ServerError::AutoUnseal(format!("auto_unseal: share #{} was rejected: {e}", i + 1))
        })?;
        if !status.sealed {
            tracing::info!(shares_used = i + 1, "vault unsealed by auto-unseal");
            return Ok(status);
        }
    }
    Err(ServerError::AutoUnseal(format!(
        "auto_unseal: {} share(s) submitted but the vault needs {}; add more shares",
        shares.len(),
        status.threshold
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_on_newlines_and_commas() {
        let text = "# unseal keys\nabc\n\n  def , ghi\n#jkl\n";
        assert_eq!(shares(text), vec!["abc", "def", "ghi"]);
    }

    #[test]
    fn missing_env_var_is_a_clear_error() {
        let e = AutoUnseal::KeyEnv("LOCKANA_TEST_SURELY_UNSET_VAR".into())
            .read()
            .expect_err("unset");
        assert!(e.to_string().contains("LOCKANA_TEST_SURELY_UNSET_VAR"));
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let e = AutoUnseal::KeyFile("/nonexistent/lockana/unseal.keys".into())
            .read()
            .expect_err("missing");
        assert!(e.to_string().contains("key_file"));
    }
}
