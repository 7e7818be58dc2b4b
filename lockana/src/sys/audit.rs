//! `sys/audit`, `sys/audit/<path>` and `sys/audit-hash/<path>`, as Vault serves them.

use serde_json::{Map, Value, json};

use crate::audit::DeviceConfig;
use crate::vault::Core;
use crate::{Error, Operation, Request, Response, ResponseFormat, Result};

fn system(data: Map<String, Value>) -> Response {
    let mut r = Response::with_data(data);
    r.mount_type = "system".into();
    r
}

/// `sys/lockana/audit-head[/<path>]` (Lockana's own, sudo): the chain head each
/// device has written, which `lockana audit verify --address` compares a file with.
pub(crate) fn head(core: &Core, req: &Request, rest: &str) -> Result<Response> {
    if req.operation != Operation::Read {
        return Err(Error::UnsupportedOperation);
    }
    let path = rest
        .strip_prefix("lockana/audit-head")
        .map(|p| p.trim_start_matches('/'))
        .filter(|p| !p.is_empty());
    Ok(system(core.audit.heads(path)?))
}

/// `rest` is the path after `sys/`: `audit`, `audit/<path>` or `audit-hash/<path>`.
pub(crate) fn handle(core: &Core, req: &Request, rest: &str) -> Result<Response> {
    if rest == "audit" || rest == "audit/" {
        return match req.operation {
            Operation::Read => {
                let mut r = system(core.audit.list());
                // Vault copies the map to the top level too (legacy clients read it there).
                r.format = ResponseFormat::EnvelopeWithTopLevelData;
                Ok(r)
            }
            _ => Err(Error::UnsupportedOperation),
        };
    }
    if let Some(path) = rest.strip_prefix("audit-hash/") {
        return match req.operation {
            Operation::Create | Operation::Update => {
                let input = match req.data.get("input") {
                    Some(Value::String(s)) => s,
                    _ => return Err(Error::invalid("'input' must be a string")),
                };
                let hash = core.audit.hash(path, input)?;
                let mut m = Map::new();
                m.insert("hash".into(), json!(hash));
                let mut r = system(m);
                r.format = ResponseFormat::EnvelopeWithTopLevelData;
                Ok(r)
            }
            _ => Err(Error::UnsupportedOperation),
        };
    }
    let Some(path) = rest.strip_prefix("audit/") else {
        return Err(Error::NoRoute(req.path.clone()));
    };
    match req.operation {
        Operation::Create | Operation::Update => {
            let config = DeviceConfig::parse(path, &req.data)?;
            core.audit.enable(&core.barrier, config)?;
            Ok(Response::empty())
        }
        Operation::Delete => {
            core.audit.disable(&core.barrier, path)?;
            Ok(Response::empty())
        }
        _ => Err(Error::UnsupportedOperation),
    }
}
