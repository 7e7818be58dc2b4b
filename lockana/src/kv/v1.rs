//! KV version 1: one unversioned JSON object per path. Also serves `cubbyhole/`, whose
//! storage prefix is the calling token's own.

use serde_json::{Map, Value};

use super::{Ctx, list_response};
use crate::mounts::EngineKind;
use crate::{Error, Operation, Request, Response, Result};

pub(crate) fn handle(ctx: &Ctx<'_>, req: &Request, rel: &str) -> Result<Response> {
    let key = format!("data/{rel}");
    let mut resp = match req.operation {
        Operation::List => list_response(ctx.list(&key)?)?,
        _ if rel.is_empty() || rel.ends_with('/') => {
            return Err(Error::invalid("missing secret path"));
        }
        Operation::Read => {
            let data: Map<String, Value> = ctx.get_json(&key)?.ok_or(Error::NotFound)?;
            let mut r = Response::with_data(data);
            if ctx.mount.engine() == EngineKind::KvV1 {
                r.lease_duration = ctx.mount.effective_ttl();
            }
            r
        }
        Operation::Create | Operation::Update => {
            if req.data.is_empty() {
                return Err(Error::invalid("missing data fields"));
            }
            ctx.apply(vec![ctx.put_op(&key, &req.data)?])?;
            Response::empty()
        }
        Operation::Delete => {
            ctx.apply(vec![ctx.delete_op(&key)])?;
            Response::empty()
        }
        Operation::Patch => return Err(Error::UnsupportedOperation),
    };
    resp.mount_type = ctx.mount.kind.clone();
    Ok(resp)
}
