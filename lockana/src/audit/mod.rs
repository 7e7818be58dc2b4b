//! The audit broker: every authenticated request and its response are written to the
//! enabled audit devices before the client hears anything (fail-closed).
//!
//! Today no devices exist, so logging succeeds trivially; the audit issue fills this in.

use crate::auth::token::TokenEntry;
use crate::{Request, Response, Result};

/// Writes audit entries to every enabled device.
#[derive(Default)]
pub(crate) struct AuditBroker;

impl AuditBroker {
    /// Records a request about to be served. An error refuses the request.
    pub(crate) fn log_request(&self, _req: &Request, _auth: Option<&TokenEntry>) -> Result<()> {
        Ok(())
    }

    /// Records the outcome of a served request. An error withholds the response.
    pub(crate) fn log_response(
        &self,
        _req: &Request,
        _auth: Option<&TokenEntry>,
        _outcome: &Result<Response>,
    ) -> Result<()> {
        Ok(())
    }
}
