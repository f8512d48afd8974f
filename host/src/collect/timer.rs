//! When the engine wakes next: a timerfd armed for that instant.
//!
//! The engine sleeps until its next event (a collection, a send, a retry), about a
//! second away at `collect_every 1`. Through tokio's timer that cost the runtime's
//! thread three wake-ups per event where one is due: tokio files a deadline more than
//! 64 ms away in a coarse slot of its wheel and wakes at the slot's start to file it
//! again, and registering a deadline with an empty wheel wakes the driver through its
//! eventfd. A timerfd armed for the instant is one more file in the runtime's epoll
//! set, and wakes it once, when the instant comes.

use std::os::fd::OwnedFd;

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use tokio::io::unix::AsyncFd;
use tokio::time::{Instant, sleep_until};

/// Sleeps until an instant; one per engine.
pub(crate) enum WakeTimer {
    /// A timerfd in the runtime's epoll set; `armed` is the instant it is set for.
    Precise {
        timer: AsyncFd<OwnedFd>,
        armed: Option<Instant>,
    },
    /// tokio's timer: where no timerfd can be had, and under tokio's paused clock
    /// (the engine's tests), which a timerfd knows nothing of.
    Tokio,
}

impl WakeTimer {
    /// A timerfd, or tokio's timer if none can be made.
    pub(crate) fn precise() -> WakeTimer {
        let timer = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )
        .map_err(std::io::Error::from)
        .and_then(|fd| {
            // SAFETY: `fd` is an open timerfd, and the AsyncFd owns it (and so keeps it
            // open, the same descriptor) until it drops.
            unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::other)
        });
        match timer {
            Ok(timer) => WakeTimer::Precise { timer, armed: None },
            Err(error) => {
                tracing::warn!("no timerfd ({error}): the engine sleeps on tokio's timer");
                WakeTimer::Tokio
            }
        }
    }

    /// Completes at `at`, at once if it has passed. Cancel-safe: a timer dropped
    /// unfinished stays armed, and a later call for the same instant waits on it.
    pub(crate) async fn until(&mut self, at: Instant) {
        let WakeTimer::Precise { timer, armed } = self else {
            return sleep_until(at).await;
        };
        let now = Instant::now();
        if at <= now {
            return;
        }
        if *armed != Some(at) {
            // Arming anew also clears an expiry nobody read.
            if let Err(error) = arm(timer.get_ref(), at - now) {
                tracing::warn!("timerfd: {error}; sleeping on tokio's timer");
                return sleep_until(at).await;
            }
            *armed = Some(at);
        }
        loop {
            let mut ready = match timer.readable().await {
                Ok(ready) => ready,
                Err(error) => {
                    tracing::warn!("timerfd: {error}; sleeping on tokio's timer");
                    return sleep_until(at).await;
                }
            };
            // One read takes every expiry, and a one-shot timer expires again only once
            // armed again: it is not readable until then, whatever the read returned.
            let mut expirations = [0u8; 8];
            let read = rustix::io::read(ready.get_inner(), &mut expirations);
            ready.clear_ready();
            if read.is_ok() {
                *armed = None;
                return;
            }
        }
    }
}

/// Sets `timer` to expire once, `after` from now.
fn arm(timer: &OwnedFd, after: std::time::Duration) -> rustix::io::Result<()> {
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let value = Timespec {
        tv_sec: after.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: after.subsec_nanos().into(),
    };
    timerfd_settime(
        timer,
        TimerfdTimerFlags::empty(),
        &Itimerspec {
            it_interval: zero,
            it_value: value,
        },
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_at_the_instant_and_not_before() {
        let mut timer = WakeTimer::precise();
        assert!(matches!(timer, WakeTimer::Precise { .. }));
        for millis in [30, 1, 80] {
            let start = Instant::now();
            let at = start + Duration::from_millis(millis);
            timer.until(at).await;
            let woke = Instant::now();
            assert!(woke >= at, "woke {:?} early", at - woke);
            assert!(
                woke - at < Duration::from_millis(500),
                "woke {:?} late",
                woke - at
            );
        }
    }

    #[tokio::test]
    async fn a_wait_cut_short_can_be_taken_up_again_or_replaced() {
        let mut timer = WakeTimer::precise();
        let far = Instant::now() + Duration::from_millis(200);
        // Cut short, as a select! does when another branch completes first.
        let cut = tokio::time::timeout(Duration::from_millis(10), timer.until(far)).await;
        assert!(cut.is_err());
        // An earlier instant replaces the armed one.
        let near = Instant::now() + Duration::from_millis(20);
        timer.until(near).await;
        assert!(Instant::now() < far);
        // The same instant again is waited for, not taken as already expired.
        let at = Instant::now() + Duration::from_millis(40);
        let _ = tokio::time::timeout(Duration::from_millis(5), timer.until(at)).await;
        timer.until(at).await;
        assert!(Instant::now() >= at);
        // An instant past completes at once.
        timer.until(Instant::now() - Duration::from_millis(1)).await;
    }
}
