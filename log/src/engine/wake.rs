//! Wakes a sleeping shard: an eventfd, written only when the shard says it is asleep.

use rustix::event::{EventfdFlags, PollFd, PollFlags, eventfd, poll};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The eventfd a shard sleeps on; io_uring completions and other threads signal it.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
    sleeping: AtomicBool,
}

impl Waker {
    /// Creates a non-blocking eventfd.
    pub fn new() -> std::io::Result<Self> {
        let fd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(Waker {
            fd,
            sleeping: AtomicBool::new(false),
        })
    }

    /// The eventfd, for registering with io_uring or an async reactor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Wakes the shard if it is (about to be) asleep; cheap when it is awake.
    pub fn wake(&self) {
        // The plain load keeps the flag's cache line shared while the shard is awake; the
        // caller's queue push before it is SeqCst, as is the shard's flag store before it
        // re-checks the queue, so one of the two sides always sees the other.
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            self.signal();
        }
    }

    fn signal(&self) {
        // A full counter (EAGAIN) already means "wake up"; nothing else can fail here.
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Announces that the shard is going to sleep; the caller re-checks its queues after.
    pub fn prepare_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
    }

    /// Cancels a `prepare_sleep` because work turned up.
    pub fn cancel_sleep(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Sleeps until signalled or `timeout` passes, then clears the counter.
    ///
    /// Returns true when it was signalled.
    pub fn sleep(&self, timeout: Option<Duration>) -> bool {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let timeout = timeout.map(|d| rustix::event::Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        });
        let ready = matches!(poll(&mut fds, timeout.as_ref()), Ok(n) if n > 0);
        self.woke();
        ready
    }

    /// Ends a sleep that the caller waited out itself (e.g. on an async reactor).
    pub fn woke(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
        self.drain();
    }

    /// Clears the counter without sleeping.
    pub fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wake_interrupts_sleep_only_when_asleep() {
        let w = Arc::new(Waker::new().unwrap());
        // Awake: wake() must not leave a pending signal behind.
        w.wake();
        let mut buf = [0u8; 8];
        assert!(
            rustix::io::read(w.fd(), &mut buf).is_err(),
            "no signal while awake"
        );

        w.prepare_sleep();
        let w2 = w.clone();
        let t = std::thread::spawn(move || w2.wake());
        assert!(
            w.sleep(Some(Duration::from_secs(30))),
            "woken, not timed out"
        );
        t.join().unwrap();
        // Nothing pending any more: a short sleep now times out.
        assert!(!w.sleep(Some(Duration::from_millis(1))));
    }
}
