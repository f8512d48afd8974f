//! The in-memory table of compiled artifacts: one per distinct `.wasm` content,
//! shared by every module loaded from it, so that 100 modules of one `.wasm` hold
//! one copy of its machine code (tens of MB for a Python guest) and compile or
//! deserialize it once.
//!
//! Loads of the same content wait for the first one; loads of different contents
//! run in parallel (each content has its own lock). An artifact lives as long as a
//! module holds it: the table keeps only a weak reference, so a reload that drops
//! the last module of a `.wasm` frees its code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Artifacts of type `T` keyed by the SHA-256 of their `.wasm`.
pub(crate) struct Artifacts<T> {
    slots: Mutex<HashMap<[u8; 32], Arc<Slot<T>>>>,
}

/// The one artifact of one content. Its lock is held while it is being made.
struct Slot<T> {
    artifact: Mutex<Weak<T>>,
}

impl<T> Default for Artifacts<T> {
    fn default() -> Artifacts<T> {
        Artifacts {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Artifacts<T> {
    /// The live artifact of `content_hash`, or the one `make` returns (kept for
    /// later loads). While one caller makes it, others of the same content wait and
    /// then share it; an error is returned to its caller only, and the next caller
    /// tries again.
    pub(crate) fn get_or_make<E>(
        &self,
        content_hash: &[u8; 32],
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            if !slots.contains_key(content_hash) {
                // Forget the contents no module uses any more, so reloads of changing
                // files do not grow the table.
                slots.retain(|_, slot| slot.in_use());
            }
            slots
                .entry(*content_hash)
                .or_insert_with(|| {
                    Arc::new(Slot {
                        artifact: Mutex::new(Weak::new()),
                    })
                })
                .clone()
        };
        let mut artifact = slot.artifact.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(live) = artifact.upgrade() {
            return Ok(live);
        }
        let live = Arc::new(make()?);
        *artifact = Arc::downgrade(&live);
        Ok(live)
    }

    /// How many distinct artifacts modules hold now.
    pub(crate) fn live(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots
            .values()
            .filter(|slot| {
                slot.artifact
                    .try_lock()
                    .is_ok_and(|artifact| artifact.strong_count() > 0)
            })
            .count()
    }
}

impl<T> Slot<T> {
    /// Whether a module holds the artifact, or one is being made (the lock is held).
    fn in_use(&self) -> bool {
        match self.artifact.try_lock() {
            Ok(artifact) => artifact.strong_count() > 0,
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn one_content_is_made_once_and_shared() {
        let artifacts = Artifacts::<String>::default();
        let made = AtomicUsize::new(0);
        let make = || -> Result<String, ()> {
            made.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            Ok("code".to_string())
        };
        let held: Vec<Arc<String>> = std::thread::scope(|scope| {
            let loads: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| artifacts.get_or_make(&[1; 32], make).unwrap()))
                .collect();
            loads.into_iter().map(|l| l.join().unwrap()).collect()
        });
        assert_eq!(made.load(Ordering::SeqCst), 1, "made once for 8 loads");
        assert!(held.iter().all(|a| Arc::ptr_eq(a, &held[0])), "one copy");
        assert_eq!(artifacts.live(), 1);
    }

    #[test]
    fn different_contents_are_made_in_parallel() {
        let artifacts = Artifacts::<u8>::default();
        let (a_started, a_seen) = mpsc::channel();
        let (b_started, b_seen) = mpsc::channel();
        // Each make waits for the other to have started: serialized makes would time out.
        let artifacts = &artifacts;
        std::thread::scope(|scope| {
            let a = scope.spawn(move || {
                artifacts.get_or_make(&[1; 32], || {
                    a_started.send(()).unwrap();
                    b_seen.recv_timeout(Duration::from_secs(10)).map(|()| 1)
                })
            });
            let b = scope.spawn(move || {
                artifacts.get_or_make(&[2; 32], || {
                    b_started.send(()).unwrap();
                    a_seen.recv_timeout(Duration::from_secs(10)).map(|()| 2)
                })
            });
            assert_eq!(*a.join().unwrap().unwrap(), 1);
            assert_eq!(*b.join().unwrap().unwrap(), 2);
        });
    }

    #[test]
    fn errors_are_not_kept_and_unused_artifacts_are_freed() {
        let artifacts = Artifacts::<u8>::default();
        assert_eq!(artifacts.get_or_make(&[1; 32], || Err("bad")), Err("bad"));
        let first = artifacts.get_or_make(&[1; 32], || Ok::<_, ()>(7)).unwrap();
        assert_eq!(*first, 7, "the next load tries again");
        let weak = Arc::downgrade(&first);
        drop(first);
        assert!(weak.upgrade().is_none(), "the table does not keep it alive");
        assert_eq!(artifacts.live(), 0);
        let again = artifacts.get_or_make(&[2; 32], || Ok::<_, ()>(8)).unwrap();
        assert_eq!(*again, 8);
        let slots = artifacts.slots.lock().unwrap();
        assert_eq!(slots.len(), 1, "the unused slot was forgotten");
    }
}
