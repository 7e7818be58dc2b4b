//! `sys/host-info`: CPU, CPU times, disk, host and memory facts in the shapes
//! OpenBao's gopsutil-based collector returns. Read from `/proc` and `/etc` and
//! `statvfs(2)` (rustix: a safe wrapper, so the library keeps `forbid(unsafe_code)`).
//! A part that cannot be read is left out with a warning, as in OpenBao.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{obj, sys_response};
use crate::vault::Core;
use crate::{Error, Operation, Request, Response, Result};

/// Clock ticks per second of `/proc/stat` (USER_HZ, 100 on every Linux build).
const USER_HZ: f64 = 100.0;

pub(super) fn handle(core: &Core, req: &Request) -> Result<Response> {
    if req.operation != Operation::Read {
        return Err(Error::UnsupportedOperation);
    }
    let mut data = Map::new();
    let mut warnings = Vec::new();
    let mut part = |name: &str, v: Option<Value>| match v {
        Some(v) => {
            data.insert(name.into(), v);
        }
        None => warnings.push(format!("unable to collect {name} information")),
    };
    part("cpu", cpu());
    part("cpu_times", cpu_times());
    part("disk", disk());
    part("host", host());
    part("memory", memory());
    data.insert("timestamp".into(), json!(crate::clock::rfc3339(core.now())));
    let mut r = sys_response(data);
    r.warnings = warnings;
    Ok(r)
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// `key : value` lines of `/proc/cpuinfo`, one map per processor.
fn cpu() -> Option<Value> {
    let text = read("/proc/cpuinfo")?;
    let mut out = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let kv: BTreeMap<&str, &str> = block
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let num = |k: &str| kv.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let text = |k: &str| kv.get(k).copied().unwrap_or("");
        let cache_kb = text("cache size")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        out.push(json!({
            "cpu": num("processor"),
            "vendorId": text("vendor_id"),
            "family": text("cpu family"),
            "model": text("model"),
            "stepping": num("stepping"),
            "physicalId": text("physical id"),
            "coreId": text("core id"),
            "cores": 1,
            "modelName": text("model name"),
            "mhz": kv.get("cpu MHz").and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0).round(),
            "cacheSize": cache_kb * 1024,
            "flags": text("flags").split_whitespace().collect::<Vec<_>>(),
            "microcode": text("microcode"),
        }));
    }
    (!out.is_empty()).then_some(Value::Array(out))
}

/// Per-CPU lines of `/proc/stat`, in seconds.
fn cpu_times() -> Option<Value> {
    let text = read("/proc/stat")?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(name) = f.next() else { continue };
        if !name.starts_with("cpu") || name == "cpu" {
            continue;
        }
        let v: Vec<f64> = f
            .map(|x| x.parse::<f64>().unwrap_or(0.0) / USER_HZ)
            .collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
        out.push(json!({
            "cpu": name,
            "user": at(0), "nice": at(1), "system": at(2), "idle": at(3),
            "iowait": at(4), "irq": at(5), "softirq": at(6), "steal": at(7),
            "guest": at(8), "guestNice": at(9),
        }));
    }
    (!out.is_empty()).then_some(Value::Array(out))
}

/// Usage of the root file system.
fn disk() -> Option<Value> {
    let s = rustix::fs::statvfs("/").ok()?;
    let frsize = s.f_frsize;
    let total = s.f_blocks.saturating_mul(frsize);
    let free = s.f_bavail.saturating_mul(frsize);
    let used = s.f_blocks.saturating_sub(s.f_bfree).saturating_mul(frsize);
    let pct = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64 * 100.0
        }
    };
    let inodes_used = s.f_files.saturating_sub(s.f_ffree);
    let fstype = read("/proc/mounts")
        .and_then(|m| {
            m.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.get(1) == Some(&"/")).then(|| f.get(2).map(|t| (*t).to_owned()))
                })
                .next_back()
                .flatten()
        })
        .unwrap_or_default();
    Some(json!([{
        "path": "/",
        "fstype": fstype,
        "total": total,
        "free": free,
        "used": used,
        "usedPercent": pct(used, used + free),
        "inodesTotal": s.f_files,
        "inodesUsed": inodes_used,
        "inodesFree": s.f_ffree,
        "inodesUsedPercent": pct(inodes_used, s.f_files),
    }]))
}

fn os_release() -> BTreeMap<String, String> {
    read("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

fn host() -> Option<Value> {
    let trim = |p: &str| read(p).map(|s| s.trim().to_owned()).unwrap_or_default();
    let uptime = read("/proc/uptime")?
        .split_whitespace()
        .next()?
        .parse::<f64>()
        .ok()? as u64;
    let boot = read("/proc/stat")
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("btime ")
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
        })
        .unwrap_or(0);
    let procs = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0);
    let os = os_release();
    let get = |k: &str| os.get(k).cloned().unwrap_or_default();
    Some(json!({
        "hostname": trim("/proc/sys/kernel/hostname"),
        "uptime": uptime,
        "bootTime": boot,
        "procs": procs,
        "os": std::env::consts::OS,
        "platform": get("ID"),
        "platformFamily": get("ID_LIKE").split_whitespace().next().map_or_else(|| get("ID"), str::to_owned),
        "platformVersion": get("VERSION_ID"),
        "kernelVersion": trim("/proc/sys/kernel/osrelease"),
        "kernelArch": std::env::consts::ARCH,
        "virtualizationSystem": "",
        "virtualizationRole": "",
        "hostid": trim("/proc/sys/kernel/random/boot_id"),
    }))
}

/// `/proc/meminfo`, in bytes, under gopsutil's names.
fn memory() -> Option<Value> {
    let text = read("/proc/meminfo")?;
    let kv: BTreeMap<&str, u64> = text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let n = v.split_whitespace().next()?.parse::<u64>().ok()?;
            let bytes = if v.trim_end().ends_with("kB") {
                n * 1024
            } else {
                n
            };
            Some((k.trim(), bytes))
        })
        .collect();
    let g = |k: &str| kv.get(k).copied().unwrap_or(0);
    let total = g("MemTotal");
    let available = g("MemAvailable");
    let cached = g("Cached") + g("SReclaimable");
    let used = total.saturating_sub(g("MemFree") + g("Buffers") + cached);
    let m: Map<String, Value> = obj(json!({
        "total": total,
        "available": available,
        "used": used,
        "usedPercent": if total == 0 { 0.0 } else { used as f64 / total as f64 * 100.0 },
        "free": g("MemFree"),
        "active": g("Active"),
        "inactive": g("Inactive"),
        "wired": 0,
        "laundry": 0,
        "buffers": g("Buffers"),
        "cached": cached,
        "writeback": g("Writeback"),
        "dirty": g("Dirty"),
        "writebacktmp": g("WritebackTmp"),
        "shared": g("Shmem"),
        "slab": g("Slab"),
        "sreclaimable": g("SReclaimable"),
        "sunreclaim": g("SUnreclaim"),
        "pagetables": g("PageTables"),
        "swapcached": g("SwapCached"),
        "commitlimit": g("CommitLimit"),
        "committedas": g("Committed_AS"),
        "hightotal": g("HighTotal"),
        "highfree": g("HighFree"),
        "lowtotal": g("LowTotal"),
        "lowfree": g("LowFree"),
        "swaptotal": g("SwapTotal"),
        "swapfree": g("SwapFree"),
        "mapped": g("Mapped"),
        "vmalloctotal": g("VmallocTotal"),
        "vmallocused": g("VmallocUsed"),
        "vmallocchunk": g("VmallocChunk"),
        "hugepagestotal": g("HugePages_Total"),
        "hugepagesfree": g("HugePages_Free"),
        "hugepagesize": g("Hugepagesize"),
    }));
    (total > 0).then_some(Value::Object(m))
}
