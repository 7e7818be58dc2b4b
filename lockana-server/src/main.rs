//! The `lockana` binary: see `lockana --help`.
#![forbid(unsafe_code)]

mod cli;

/// jemalloc rather than glibc's malloc: after a large request glibc keeps the freed
/// heap (per-thread arenas and a sliding mmap threshold) and the server's RSS stays at
/// its peak; jemalloc's background thread returns freed pages within about a second
/// (`.cargo/config.toml` sets the decay; docs/operations.md has the measurements).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    cli::run()
}
