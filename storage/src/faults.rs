//! Storage fault injection for tests and chaos runs.
//!
//! OpenDAL's chaos layer injects read errors only; a [`FaultInjector`] also fails writes,
//! loses write acknowledgements and slows every operation. A
//! [`StorageDir`](crate::StorageDir) built with
//! [`with_faults`](crate::StorageDir::with_faults) consults it before (and, for lost
//! acknowledgements, after) each operation.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Which side of the injector an operation is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpClass {
    /// `write_once`, `write_blob`, `delete`, `delete_prefix`.
    Write,
    /// `read`, `read_blob`, `exists`, `list`.
    Read,
}

/// Switchable storage faults, shared by every clone (an `Arc` inside; cloning is cheap).
///
/// All faults start off. An injected failure surfaces as
/// [`StorageError::Injected`](crate::StorageError::Injected), which is temporary, and
/// happens *before* the backend is called, so a failed write leaves nothing behind. The one
/// exception is [`lose_next_write_acks`](Self::lose_next_write_acks): the write happens and
/// only its success is hidden, as when a connection drops after the server committed.
#[derive(Debug, Clone, Default)]
pub struct FaultInjector {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    fail_next_writes: AtomicUsize,
    fail_all_writes: AtomicBool,
    lose_next_write_acks: AtomicUsize,
    fail_reads: AtomicBool,
    delay_us: AtomicU64,
    injected: AtomicU64,
}

impl FaultInjector {
    /// An injector with every fault off.
    pub fn new() -> FaultInjector {
        FaultInjector::default()
    }

    /// Fails the next `n` write operations (replaces any earlier count).
    pub fn fail_next_writes(&self, n: usize) {
        self.inner.fail_next_writes.store(n, Ordering::SeqCst);
    }

    /// Fails every write operation while `on`.
    pub fn fail_all_writes(&self, on: bool) {
        self.inner.fail_all_writes.store(on, Ordering::SeqCst);
    }

    /// Lets the next `n` writes reach the backend, then reports each as failed. Models an
    /// unknown outcome: the data is there, the caller thinks it is not.
    pub fn lose_next_write_acks(&self, n: usize) {
        self.inner.lose_next_write_acks.store(n, Ordering::SeqCst);
    }

    /// Fails every read operation while `on`.
    pub fn fail_reads(&self, on: bool) {
        self.inner.fail_reads.store(on, Ordering::SeqCst);
    }

    /// Sleeps `d` before every operation (`Duration::ZERO` turns it off).
    pub fn delay(&self, d: Duration) {
        self.inner.delay_us.store(d.as_micros().min(u64::MAX as u128) as u64, Ordering::SeqCst);
    }

    /// Turns every fault off (the injected count is kept).
    pub fn clear(&self) {
        self.fail_next_writes(0);
        self.fail_all_writes(false);
        self.lose_next_write_acks(0);
        self.fail_reads(false);
        self.delay(Duration::ZERO);
    }

    /// How many failures this injector (and its clones) injected so far.
    pub fn injected_count(&self) -> u64 {
        self.inner.injected.load(Ordering::SeqCst)
    }

    /// Applies the delay, then decides whether the operation fails (`true` = fail it).
    pub(crate) async fn before(&self, class: OpClass) -> bool {
        let delay = self.inner.delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        let fail = match class {
            OpClass::Read => self.inner.fail_reads.load(Ordering::SeqCst),
            OpClass::Write => {
                self.inner.fail_all_writes.load(Ordering::SeqCst) || take_one(&self.inner.fail_next_writes)
            }
        };
        if fail {
            self.inner.injected.fetch_add(1, Ordering::SeqCst);
        }
        fail
    }

    /// After a successful write: whether to report it as failed.
    pub(crate) fn lose_ack(&self) -> bool {
        let lose = take_one(&self.inner.lose_next_write_acks);
        if lose {
            self.inner.injected.fetch_add(1, Ordering::SeqCst);
        }
        lose
    }
}

/// Decrements `n` if it is positive; whether it did.
fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1)).is_ok()
}
