//! KV version 1: one unversioned JSON object per path. Also serves `cubbyhole/`, whose
//! storage prefix is the calling token's own.

use serde_json::{Map, Value};

use super::{Ctx, list_response};
use crate::engine::{Answer, Backend, Existence};
use crate::help::BackendDoc;
use crate::{Error, Operation, Request, Response, Result};

/// The KV version 1 engine.
pub(crate) struct KvV1;

impl Backend for KvV1 {
    fn doc(&self) -> &'static BackendDoc {
        &crate::help::KV_V1
    }

    fn handle(&self, ctx: &Ctx<'_>, req: &Request, rel: &str) -> Result<Answer> {
        Ok(handle(ctx, req, rel, true)?.into())
    }

    fn existence(&self, ctx: &Ctx<'_>, rel: &str) -> Result<Existence> {
        Ok(Existence::found(
            ctx.barrier.get(&ctx.key(&format!("data/{rel}")))?.is_some(),
        ))
    }
}

/// `cubbyhole/`: KV v1 where each token sees only its own entries.
pub(crate) struct Cubbyhole;

impl Backend for Cubbyhole {
    fn doc(&self) -> &'static BackendDoc {
        &crate::help::CUBBYHOLE
    }

    fn handle(&self, ctx: &Ctx<'_>, req: &Request, rel: &str) -> Result<Answer> {
        Ok(handle(ctx, req, rel, false)?.into())
    }

    // A write is always allowed by the default policy, so treat it as existing.
    fn existence(&self, _ctx: &Ctx<'_>, _rel: &str) -> Result<Existence> {
        Ok(Existence::Exists)
    }

    fn per_token_storage(&self) -> bool {
        true
    }
}

/// Serves KV v1 (`leased`: reads report the mount's lease TTL, as KV v1 does and
/// cubbyhole does not).
fn handle(ctx: &Ctx<'_>, req: &Request, rel: &str, leased: bool) -> Result<Response> {
    let key = format!("data/{rel}");
    let mut resp = match req.operation {
        Operation::List => list_response(ctx.list(&key)?)?,
        _ if rel.is_empty() || rel.ends_with('/') => {
            return Err(Error::invalid("missing secret path"));
        }
        Operation::Read => {
            let data: Map<String, Value> = ctx.get_json(&key)?.ok_or(Error::NotFound)?;
            let mut r = Response::with_data(data);
            if leased {
                r.lease_duration = ctx.mount.effective_ttl(ctx.ttls);
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
