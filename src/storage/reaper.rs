//! [`Reaper`]: runs clean-up work on a thread of its own so that the
//! thread that made the garbage does not stall on it: freeing a snapshot's
//! worth of log entries (the core thread), closing deleted segment files
//! (the log writer). The thread starts on first use and ends once the
//! reaper is dropped and its work is done.

use std::sync::mpsc::{channel, sync_channel, Sender, SyncSender};

enum Job {
    Run(Box<dyn FnOnce() + Send>),
    /// Answered once everything handed over before it has run.
    Barrier(SyncSender<()>),
}

/// See the module docs.
pub struct Reaper {
    name: String,
    tx: Option<Sender<Job>>,
}

impl Reaper {
    /// A reaper whose thread (when started) is called `name`.
    pub fn new(name: impl Into<String>) -> Reaper {
        Reaper { name: name.into(), tx: None }
    }

    /// Runs `work` on the reaper's thread; here, at once, when the thread
    /// cannot be started.
    pub fn run(&mut self, work: impl FnOnce() + Send + 'static) {
        if self.tx.is_none() {
            let (tx, rx) = channel::<Job>();
            let spawned = std::thread::Builder::new().name(self.name.clone()).spawn(move || {
                while let Ok(job) = rx.recv() {
                    match job {
                        Job::Run(work) => work(),
                        Job::Barrier(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
            match spawned {
                Ok(_) => self.tx = Some(tx),
                Err(e) => log::warn!("cannot start the {} thread ({e}); cleaning up inline", self.name),
            }
        }
        let work: Box<dyn FnOnce() + Send> = Box::new(work);
        match &self.tx {
            Some(tx) => {
                if let Err(back) = tx.send(Job::Run(work)) {
                    if let Job::Run(work) = back.0 {
                        work();
                    }
                }
            }
            None => work(),
        }
    }

    /// Whether work may be pending on the thread.
    pub fn started(&self) -> bool {
        self.tx.is_some()
    }

    /// Waits until everything handed over so far has run.
    pub fn wait(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, rx) = sync_channel(1);
        if tx.send(Job::Barrier(done)).is_ok() {
            let _ = rx.recv();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn work_runs_off_thread_in_order_and_wait_sees_it_done() {
        let mut r = Reaper::new("test-reaper");
        let log = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let here = std::thread::current().id();
        let off = Arc::new(AtomicUsize::new(0));
        for i in 0..100 {
            let (log, off) = (Arc::clone(&log), Arc::clone(&off));
            r.run(move || {
                if std::thread::current().id() != here {
                    off.fetch_add(1, Ordering::Relaxed);
                }
                log.lock().push(i);
            });
        }
        assert!(r.started());
        r.wait();
        assert_eq!(*log.lock(), (0..100).collect::<Vec<_>>());
        assert_eq!(off.load(Ordering::Relaxed), 100);
    }
}
