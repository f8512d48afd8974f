//! Deadlines for the WASI calls that wait inside the host.
//!
//! The epoch deadline interrupts wasm code only: a guest that sleeps (say
//! `std::thread::sleep` for an hour) waits in the host's `wasi:io/poll`, where no
//! epoch check runs. This module shadows `poll` and `pollable.block` with versions
//! that give up when the callback's deadline passes, trapping the guest with
//! [`BlockedPastDeadline`], which the runtime reports as a deadline error.

use std::future::Future;
use std::time::Instant;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi_io::bindings::wasi::io::poll::{Host as _, HostPollable as _};

use super::state::HostState;

/// The `wasi:io/poll` instance that `wasmtime_wasi::p2::add_to_linker_sync` defines
/// (the version of wasmtime-wasi 48's WIT). Guests importing an older 0.2 version
/// are matched to it by semver.
const WASI_IO_POLL: &str = "wasi:io/poll@0.2.12";

/// The trap raised when a guest is still waiting in the host at its deadline.
#[derive(Debug, thiserror::Error)]
#[error("waited in the host past the callback's deadline")]
pub(crate) struct BlockedPastDeadline;

/// Replaces the blocking functions of `wasi:io/poll` in `linker`, which must
/// already hold WASI p2.
pub(crate) fn add_deadline_aware_poll(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_IO_POLL)?;
    poll.func_wrap(
        "poll",
        |mut store: StoreContextMut<'_, HostState>, (pollables,): (Vec<Resource<DynPollable>>,)| {
            let state = store.data_mut();
            let deadline = state.deadline;
            let ready = within(deadline, state.table.poll(pollables))?;
            Ok((ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, HostState>, (pollable,): (Resource<DynPollable>,)| {
            let state = store.data_mut();
            let deadline = state.deadline;
            within(deadline, state.table.block(pollable))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Runs `work` to completion or until `deadline`, whichever comes first.
fn within<T>(
    deadline: Instant,
    work: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    // The timer must be created inside the runtime that `in_tokio` enters.
    match in_tokio(async move { tokio::time::timeout(remaining, work).await }) {
        Ok(result) => result,
        Err(_elapsed) => Err(BlockedPastDeadline.into()),
    }
}
