//! Process hardening at server start: what Vault's `disable_mlock` guards and more.
//!
//! - No core dumps (`RLIMIT_CORE` 0, soft and hard) and not dumpable
//!   (`PR_SET_DUMPABLE` 0): a crash leaves no file with unseal keys or tokens in it,
//!   and another process of the same user cannot ptrace the server or read its
//!   memory through `/proc/<pid>/mem`.
//! - Memory locked (`mlockall`) so the keyring and tokens are never written to swap.
//!   Locking is tried only where the kernel lets it grow with the heap (the
//!   `CAP_IPC_LOCK` capability, or an unlimited `RLIMIT_MEMLOCK`): with a finite
//!   limit, `MCL_FUTURE` would make allocations fail once the limit is reached, and
//!   the server would abort under load instead of at start.
//!
//! The system calls go through `rustix`'s safe wrappers: no `unsafe` here either.

/// How the process was hardened, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    /// `RLIMIT_CORE` is 0 and the process is not dumpable.
    pub no_core_dumps: bool,
    /// What became of memory locking.
    pub memory: MemoryLock,
}

/// The outcome of memory locking.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemoryLock {
    /// All current and future pages are locked.
    Locked,
    /// `disable_mlock = true` (or dev mode): not tried.
    Disabled,
    /// Not permitted or failed; the text says why and what to change.
    NotPermitted(String),
}

/// Hardens the running process. `lock_memory` is `!disable_mlock`.
///
/// Failures never stop the server: each is reported in the returned [`Hardening`]
/// and logged by [`Hardening::log`].
pub fn harden_process(lock_memory: bool) -> Hardening {
    let no_core_dumps = imp::disable_core_dumps();
    let memory = if lock_memory {
        imp::lock_memory()
    } else {
        MemoryLock::Disabled
    };
    Hardening {
        no_core_dumps,
        memory,
    }
}

impl Hardening {
    /// One log line per measure: info when in force, a warning when not.
    pub fn log(&self) {
        if self.no_core_dumps {
            tracing::info!("process hardening: core dumps disabled, process not dumpable");
        } else {
            tracing::warn!(
                "process hardening: could not disable core dumps; a crash may write secrets to disk"
            );
        }
        match &self.memory {
            MemoryLock::Locked => {
                tracing::info!("process hardening: memory locked (mlockall), never swapped");
            }
            MemoryLock::Disabled => tracing::info!(
                "process hardening: memory locking disabled (disable_mlock); \
                 secrets can reach swap unless swap is off or encrypted"
            ),
            MemoryLock::NotPermitted(why) => tracing::warn!(
                "process hardening: memory NOT locked: {why}; secrets can reach swap. \
                 Allow it with CAP_IPC_LOCK or an unlimited memlock limit \
                 (systemd: LimitMEMLOCK=infinity; docker/podman: --ulimit memlock=-1), \
                 or set disable_mlock = true if swap is off or encrypted"
            ),
        }
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use rustix::io::Errno;
    use rustix::mm::{MlockAllFlags, mlockall};
    use rustix::process::{DumpableBehavior, Resource, Rlimit, getrlimit, set_dumpable_behavior};
    use rustix::thread::{CapabilitySet, capabilities};

    use super::MemoryLock;

    pub(super) fn disable_core_dumps() -> bool {
        let zero = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        let rlimit = rustix::process::setrlimit(Resource::Core, zero).is_ok();
        let dumpable = set_dumpable_behavior(DumpableBehavior::NotDumpable).is_ok();
        rlimit && dumpable
    }

    pub(super) fn lock_memory() -> MemoryLock {
        let has_ipc_lock = capabilities(None)
            .map(|sets| sets.effective.contains(CapabilitySet::IPC_LOCK))
            .unwrap_or(false);
        let limit = getrlimit(Resource::Memlock).current;
        if !has_ipc_lock && limit.is_some() {
            return MemoryLock::NotPermitted(format!(
                "no CAP_IPC_LOCK and the memlock limit is {} KiB",
                limit.unwrap_or(0) / 1024
            ));
        }
        // ONFAULT: lock pages as they are first touched rather than populating every
        // reserved mapping (thread stacks, allocator arenas) at once; touched pages
        // never reach swap either way. Kernels before 4.4 lack it.
        let flags = MlockAllFlags::CURRENT | MlockAllFlags::FUTURE;
        let locked = match mlockall(flags | MlockAllFlags::ONFAULT) {
            Err(Errno::INVAL) => mlockall(flags),
            other => other,
        };
        match locked {
            Ok(()) => MemoryLock::Locked,
            Err(err) => MemoryLock::NotPermitted(format!("mlockall failed: {err}")),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::MemoryLock;

    pub(super) fn disable_core_dumps() -> bool {
        false
    }

    pub(super) fn lock_memory() -> MemoryLock {
        MemoryLock::NotPermitted("memory locking is implemented for Linux only".to_owned())
    }
}
