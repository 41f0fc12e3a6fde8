//! Panics inside a simulated step: made quiet and recorded with their
//! location, so the runner reports them as violations of the seed (with
//! the command that replays it) instead of printing a backtrace per seed.

use std::cell::{Cell, RefCell};
use std::sync::Once;

thread_local! {
    static IN_STEP: Cell<bool> = const { Cell::new(false) };
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Makes panics inside a simulated step quiet (they become violations that
/// name the panic's location); panics elsewhere print as usual.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_STEP.with(|f| f.get()) {
                PANIC_AT.with(|p| *p.borrow_mut() = info.location().map(|l| l.to_string()));
            } else {
                prev(info);
            }
        }));
    });
}

/// Runs `f` marked as a simulated step (see [`install_panic_hook`]).
pub(crate) fn in_step<R>(f: impl FnOnce() -> R) -> R {
    IN_STEP.with(|s| s.set(true));
    let r = f();
    IN_STEP.with(|s| s.set(false));
    r
}

/// Where the last quiet panic happened, if recorded.
pub(crate) fn take_panic_location() -> Option<String> {
    IN_STEP.with(|s| s.set(false));
    PANIC_AT.with(|p| p.borrow_mut().take())
}
