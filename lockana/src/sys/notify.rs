//! `sys/lockana/notify/channels[/<name>]` and `sys/lockana/notify/routes[/<name>]`
//! (Lockana-only): notification channels and the routes that feed them.

use crate::vault::Core;
use crate::{Request, Response, Result};

/// `rest` is the path after `sys/lockana/notify/`.
pub(crate) fn handle(core: &Core, req: &Request, rest: &str) -> Result<Response> {
    crate::notify::handle_api(core, req, rest)
}
