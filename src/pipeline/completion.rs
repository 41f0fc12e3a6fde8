//! Completions: how a result travels back to whoever asked.
//!
//! A caller hands the node a callback ([`Callback`]); the stage that learns
//! the outcome runs it once. Callbacks run on a stage thread (the FSM caller
//! for proposals and reads, the core thread for refusals), so they must be
//! short and must not block: hand the result to your own thread if there is
//! more to do. [`Oneshot`] is such a hand-off for callers that want to wait.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::error::NodeError;

type Boxed<T> = Box<dyn FnOnce(Result<T, NodeError>) + Send + 'static>;

/// A one-time receiver of a call's outcome. It is always answered: a
/// callback dropped without being called (its task was lost in a crash, a
/// ring was dropped at shutdown) is called with
/// [`NodeError::ShuttingDown`] from the dropping thread.
pub struct Callback<T> {
    f: Option<Boxed<T>>,
}

impl<T> Callback<T> {
    /// Wraps `f`, which runs once with the outcome.
    pub fn new(f: impl FnOnce(Result<T, NodeError>) + Send + 'static) -> Callback<T> {
        Callback { f: Some(Box::new(f)) }
    }

    /// Delivers the outcome.
    pub fn call(mut self, r: Result<T, NodeError>) {
        if let Some(f) = self.f.take() {
            f(r);
        }
    }
}

impl<T> Callback<T> {
    /// Drops the callback without calling it (the caller was told the
    /// outcome another way).
    pub(crate) fn discard(mut self) {
        self.f.take();
    }
}

impl<T> Drop for Callback<T> {
    fn drop(&mut self) {
        if let Some(f) = self.f.take() {
            f(Err(NodeError::ShuttingDown));
        }
    }
}

struct Slot<T> {
    value: Mutex<Option<Result<T, NodeError>>>,
    ready: Condvar,
}

/// A blocking hand-off of one result: [`Oneshot::callback`] gives the node a
/// callback, [`Oneshot::wait`] parks the caller until it runs.
pub struct Oneshot<T> {
    slot: Arc<Slot<T>>,
}

impl<T: Send + 'static> Oneshot<T> {
    /// A new, empty hand-off.
    pub fn new() -> Oneshot<T> {
        Oneshot { slot: Arc::new(Slot { value: Mutex::new(None), ready: Condvar::new() }) }
    }

    /// The callback that fills this hand-off.
    pub fn callback(&self) -> Callback<T> {
        let slot = Arc::clone(&self.slot);
        Callback::new(move |r| {
            *slot.value.lock() = Some(r);
            slot.ready.notify_one();
        })
    }

    /// Waits for the result until `deadline` (`None`: for ever).
    ///
    /// # Errors
    /// The call's own error, or [`NodeError::Timeout`] if the deadline
    /// passed first (the outcome is then unknown).
    pub fn wait(self, deadline: Option<Instant>) -> Result<T, NodeError> {
        let mut v = self.slot.value.lock();
        loop {
            if let Some(r) = v.take() {
                return r;
            }
            match deadline {
                Some(d) => {
                    if self.slot.ready.wait_until(&mut v, d).timed_out() && v.is_none() {
                        return Err(NodeError::Timeout);
                    }
                }
                None => self.slot.ready.wait(&mut v),
            }
        }
    }
}

impl<T: Send + 'static> Default for Oneshot<T> {
    fn default() -> Self {
        Oneshot::new()
    }
}
