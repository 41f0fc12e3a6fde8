//! The FSM caller: applies committed entries to each group's
//! [`StateMachine`] in batches, completes proposals and reads in log order,
//! and reports the applied index back to the core (one `Applied` input per
//! batch). It runs beside replication: the core keeps appending and
//! committing while this thread applies.
//!
//! A proposal's callback is registered here (by the core, before the entry
//! can commit) with the term it was proposed in. When its index is applied
//! the callback gets the state machine's answer if the applied entry has
//! that term, and [`NodeError::Dropped`] if a new leader overwrote it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;
use hashbrown::HashMap;

use super::append::publish_or_wait;
use super::completion::Callback;
use super::contract::{Restore, StateMachine};
use super::error::NodeError;
use super::input::Input;
use super::ring::{Recv, RingReceiver, RingSender};
use crate::core::{Entry, GroupId, LogIndex, Payload, Term};

/// Work for the FSM caller, in the order the core published it. Every task
/// names its `group`.
pub enum FsmTask {
    /// Callbacks of proposals at consecutive indexes from `first`, all in `term`.
    Register {
        /// The group.
        group: GroupId,
        /// The term the proposals were made in.
        term: Term,
        /// The index of the first.
        first: LogIndex,
        /// One callback per proposal, in index order.
        done: Vec<Callback<Bytes>>,
    },
    /// A membership change's callback, answered with its index.
    RegisterConf {
        /// The group.
        group: GroupId,
        /// The term the change was proposed in.
        term: Term,
        /// Its index.
        index: LogIndex,
        /// Answered with `index` once it applies.
        done: Callback<LogIndex>,
    },
    /// Committed entries, in order.
    Apply {
        /// The group.
        group: GroupId,
        /// The entries.
        entries: Vec<Entry>,
    },
    /// A confirmed read: answer once `index` is applied.
    Read {
        /// The group.
        group: GroupId,
        /// The read index.
        index: LogIndex,
        /// Answered once `index` is applied.
        done: Callback<LogIndex>,
    },
    /// Replace the state with the received snapshot (its chunks and the log
    /// reset are durable).
    Restore {
        /// The group.
        group: GroupId,
        /// What the snapshot covers.
        meta: crate::core::SnapshotMeta,
    },
}

enum Waiting {
    Propose(Term, Callback<Bytes>),
    Conf(Term, Callback<LogIndex>),
}

/// One group's state machine and who waits on it.
pub struct GroupFsm {
    /// The user's state machine.
    pub sm: Box<dyn StateMachine>,
    /// Highest index applied.
    pub applied: LogIndex,
    waiting: BTreeMap<LogIndex, Waiting>,
    reads: Vec<(LogIndex, Callback<LogIndex>)>,
    /// An install the state machine asked to retry (a full disk), first,
    /// and every task of the group that came after it, in order.
    held: VecDeque<FsmTask>,
    /// When the held install is tried again (from the step that held it).
    retry_in: Option<std::time::Duration>,
}

impl GroupFsm {
    /// A group whose state machine has applied up to `applied`.
    pub fn new(sm: Box<dyn StateMachine>, applied: LogIndex) -> GroupFsm {
        GroupFsm { sm, applied, waiting: BTreeMap::new(), reads: Vec::new(), held: VecDeque::new(), retry_in: None }
    }

    /// Registers a waiter. An older waiter at the same index was proposed in
    /// an earlier term whose entry a later leader overwrote (this node
    /// proposes at that index again): it did not commit.
    fn wait_for(&mut self, index: LogIndex, w: Waiting) {
        match self.waiting.insert(index, w) {
            Some(Waiting::Propose(_, old)) => old.call(Err(NodeError::Dropped)),
            Some(Waiting::Conf(_, old)) => old.call(Err(NodeError::Dropped)),
            None => {}
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            assert!(
                e.index == self.applied.next(),
                "fsm: entry {} committed after applied index {} (gap in committed entries)",
                e.index,
                self.applied
            );
            let out = match &e.payload {
                Payload::Normal(data) => self.sm.apply(e.index, data),
                Payload::Noop | Payload::Config(_) => Bytes::new(),
            };
            self.applied = e.index;
            match self.waiting.remove(&e.index) {
                Some(Waiting::Propose(t, done)) => {
                    done.call(if t == e.term { Ok(out) } else { Err(NodeError::Dropped) })
                }
                Some(Waiting::Conf(t, done)) => {
                    done.call(if t == e.term { Ok(e.index) } else { Err(NodeError::Dropped) })
                }
                None => {}
            }
        }
    }

    fn serve_reads(&mut self) {
        if self.reads.is_empty() {
            return;
        }
        let applied = self.applied;
        let (ready, wait): (Vec<_>, Vec<_>) = self.reads.drain(..).partition(|(i, _)| *i <= applied);
        self.reads = wait;
        for (_, done) in ready {
            done.call(Ok(applied));
        }
    }

    /// Fails everything still waiting (the node is stopping).
    fn fail_all(&mut self) {
        for (_, w) in std::mem::take(&mut self.waiting) {
            match w {
                Waiting::Propose(_, done) => done.call(Err(NodeError::ShuttingDown)),
                Waiting::Conf(_, done) => done.call(Err(NodeError::ShuttingDown)),
            }
        }
        for (_, done) in self.reads.drain(..) {
            done.call(Err(NodeError::ShuttingDown));
        }
    }
}

/// The FSM caller's thread: a thin shell that takes batches of tasks from
/// the core's ring, runs [`FsmSteps::step`] on them and hands the outcome
/// to the core.
pub(crate) struct FsmStage {
    pub rx: RingReceiver<FsmTask>,
    pub intake: RingSender<Input>,
    pub steps: FsmSteps,
    pub killed: Arc<AtomicBool>,
}

/// What one step of the FSM caller reports to the core.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FsmOutput {
    /// Each group the step touched, with its applied index (one `Applied`
    /// input).
    pub applied: Vec<(GroupId, LogIndex)>,
    /// Snapshots the state machines made (`SnapshotCreated` inputs).
    pub snapshots: Vec<(GroupId, LogIndex)>,
}

/// The FSM caller's logic, without its thread or clock: every group's state
/// machine and who waits on it. The thread calls [`FsmSteps::step`] with
/// each batch from the ring; a simulation calls it with the tasks it
/// chooses, when it chooses (issue 19: layers as steps).
pub struct FsmSteps {
    /// Every group of the node.
    pub groups: HashMap<GroupId, GroupFsm>,
}

impl FsmStage {
    /// Runs until the core drops its sender; then fails what still waits.
    pub fn run(mut self) {
        let mut tasks = Vec::with_capacity(1024);
        loop {
            let deadline = self.steps.next_poll().map(|d| std::time::Instant::now() + d);
            if self.steps.holding() {
                // An install waits to be tried again: take nothing more
                // from the ring meanwhile (FsmSteps::holding).
                if let Some(d) = deadline {
                    std::thread::park_timeout(d.saturating_duration_since(std::time::Instant::now()));
                }
                if self.killed.load(std::sync::atomic::Ordering::Acquire) {
                    return;
                }
            } else if let Recv::Closed = self.rx.recv_batch(&mut tasks, deadline) {
                break;
            }
            let poll_due = deadline.is_some_and(|d| std::time::Instant::now() >= d);
            let out = self.steps.step(tasks.drain(..), poll_due);
            if !out.applied.is_empty() {
                publish_or_wait(&mut self.intake, Input::Applied(out.applied), &self.killed);
            }
            for (g, i) in out.snapshots {
                publish_or_wait(&mut self.intake, Input::SnapshotCreated(g, i), &self.killed);
            }
        }
        self.steps.fail_all();
        log::debug!("fsm caller: ring closed, exiting");
    }
}

impl FsmSteps {
    /// The caller of `groups`.
    pub fn new(groups: HashMap<GroupId, GroupFsm>) -> FsmSteps {
        FsmSteps { groups }
    }

    /// When the earliest state machine wants to be polled for background
    /// work (a checkpoint to finish, a snapshot to report, an install to
    /// try again), from now.
    pub fn next_poll(&self) -> Option<std::time::Duration> {
        self.groups.values().filter_map(|g| g.sm.next_poll().into_iter().chain(g.retry_in).min()).min()
    }

    /// Some group holds tasks back behind an install to be tried again: the
    /// thread then takes no more from its ring until the install is done
    /// (the ring fills, and the core holds committed entries back, as for
    /// any slow state machine).
    pub fn holding(&self) -> bool {
        self.groups.values().any(|g| !g.held.is_empty())
    }

    /// Takes a batch of tasks in the core's order, then ends the batch of
    /// every group it touched (reads served, the state machine's
    /// end-of-batch work, its snapshot point taken), and of every group
    /// with background work when `poll_due` (its [`FsmSteps::next_poll`]
    /// time came).
    pub fn step(&mut self, tasks: impl IntoIterator<Item = FsmTask>, poll_due: bool) -> FsmOutput {
        let mut touched: Vec<GroupId> = Vec::new();
        if poll_due {
            // Held installs first: what came after them waits in order.
            let mut held: Vec<FsmTask> = Vec::new();
            for fsm in self.groups.values_mut() {
                fsm.retry_in = None;
                held.extend(fsm.held.drain(..));
            }
            for task in held {
                self.on_task(task, &mut touched);
            }
        }
        for task in tasks {
            self.on_task(task, &mut touched);
        }
        if poll_due {
            for (g, fsm) in &self.groups {
                if fsm.sm.next_poll().is_some() && !touched.contains(g) {
                    touched.push(*g);
                }
            }
        }
        // A group holding an install does nothing else meanwhile (no
        // end-of-batch work on the state it is replacing).
        touched.retain(|g| self.groups.get(g).is_some_and(|f| f.held.is_empty()));
        let mut out = FsmOutput { applied: Vec::with_capacity(touched.len()), snapshots: Vec::new() };
        for g in touched {
            if let Some(fsm) = self.groups.get_mut(&g) {
                // Reads first, so that everything a batch completes is
                // done before the state machine's end-of-batch work.
                fsm.serve_reads();
                fsm.sm.on_batch_end();
                out.applied.push((g, fsm.applied));
                if let Some(i) = fsm.sm.snapshot_point() {
                    out.snapshots.push((g, i));
                }
            }
        }
        out
    }

    /// Fails everything still waiting (the node is stopping).
    pub fn fail_all(&mut self) {
        for fsm in self.groups.values_mut() {
            fsm.fail_all();
        }
    }

    fn on_task(&mut self, task: FsmTask, touched: &mut Vec<GroupId>) {
        let group = match &task {
            FsmTask::Register { group, .. }
            | FsmTask::RegisterConf { group, .. }
            | FsmTask::Apply { group, .. }
            | FsmTask::Read { group, .. }
            | FsmTask::Restore { group, .. } => *group,
        };
        let Some(fsm) = self.groups.get_mut(&group) else {
            panic!("fsm: task for group {group}, which the core never registered");
        };
        if !fsm.held.is_empty() {
            fsm.held.push_back(task);
            return;
        }
        match task {
            FsmTask::Register { term, first, done, .. } => {
                let mut index = first;
                for d in done {
                    fsm.wait_for(index, Waiting::Propose(term, d));
                    index = index.next();
                }
                // A waiter replaced here was answered: end the batch so the
                // state machine hands the answer on.
                if !touched.contains(&group) {
                    touched.push(group);
                }
            }
            FsmTask::RegisterConf { term, index, done, .. } => {
                fsm.wait_for(index, Waiting::Conf(term, done));
                if !touched.contains(&group) {
                    touched.push(group);
                }
            }
            FsmTask::Apply { entries, .. } => {
                fsm.apply(entries);
                if !touched.contains(&group) {
                    touched.push(group);
                }
            }
            FsmTask::Read { index, done, .. } => {
                fsm.reads.push((index, done));
                if !touched.contains(&group) {
                    touched.push(group);
                }
            }
            FsmTask::Restore { meta, group } => {
                match fsm.sm.restore(&meta) {
                    Ok(Restore::Done) => {}
                    Ok(Restore::RetryAfter(d)) => {
                        log::debug!("fsm: group {group}: install of snapshot {} to be tried again", meta.last_index);
                        fsm.retry_in = Some(d);
                        fsm.held.push_back(FsmTask::Restore { group, meta });
                        return;
                    }
                    // Fail-stop: the log already continues after the
                    // snapshot; applying on top of the old state would
                    // diverge. A restart installs it again (StateMachine::recover).
                    Err(e) => panic!("fsm: group {group}: cannot install snapshot {}: {e}", meta.last_index),
                }
                log::info!("fsm: group {group}: installed snapshot {}", meta.last_index);
                fsm.applied = fsm.applied.max(meta.last_index);
                // Proposals this node made at indexes the snapshot covers:
                // they may or may not be in it.
                let covered: Vec<LogIndex> = fsm.waiting.range(..=meta.last_index).map(|(i, _)| *i).collect();
                for i in covered {
                    match fsm.waiting.remove(&i) {
                        Some(Waiting::Propose(_, done)) => done.call(Err(NodeError::Timeout)),
                        Some(Waiting::Conf(_, done)) => done.call(Err(NodeError::Timeout)),
                        None => {}
                    }
                }
                if !touched.contains(&group) {
                    touched.push(group);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::core::Term;

    /// Sums the entries it applies; offers a snapshot point every fourth
    /// index it ends a batch at.
    struct Summer {
        sum: Arc<Mutex<u64>>,
        last: LogIndex,
    }

    impl StateMachine for Summer {
        fn apply(&mut self, index: LogIndex, data: &Bytes) -> Bytes {
            *self.sum.lock().expect("test lock") += u64::from(data[0]);
            self.last = index;
            Bytes::from(vec![data[0] * 2])
        }

        fn snapshot_point(&mut self) -> Option<LogIndex> {
            (self.last.0.is_multiple_of(4) && self.last.0 > 0).then_some(self.last)
        }
    }

    fn entry(index: u64, term: u64, b: u8) -> Entry {
        Entry { index: LogIndex(index), term: Term(term), payload: Payload::Normal(Bytes::from(vec![b])) }
    }

    /// The caller's logic runs as a plain function: a simulation drives it
    /// task by task, and a proposal overwritten by a new leader is told so.
    #[test]
    fn a_step_applies_answers_serves_reads_and_reports_in_order() {
        let sum = Arc::new(Mutex::new(0));
        let g = GroupId(1);
        let mut groups = HashMap::new();
        groups.insert(g, GroupFsm::new(Box::new(Summer { sum: Arc::clone(&sum), last: LogIndex(0) }), LogIndex(0)));
        let mut steps = FsmSteps::new(groups);
        let answers: Arc<Mutex<Vec<Result<Bytes, NodeError>>>> = Arc::default();
        let cb = |a: &Arc<Mutex<Vec<Result<Bytes, NodeError>>>>| {
            let a = Arc::clone(a);
            Callback::new(move |r| a.lock().expect("test lock").push(r))
        };
        let read: Arc<Mutex<Option<Result<LogIndex, NodeError>>>> = Arc::default();
        let r2 = Arc::clone(&read);
        let out = steps.step(
            [
                FsmTask::Register {
                    group: g,
                    term: Term(1),
                    first: LogIndex(1),
                    done: vec![cb(&answers), cb(&answers)],
                },
                FsmTask::Read {
                    group: g,
                    index: LogIndex(3),
                    done: Callback::new(move |r| *r2.lock().expect("l") = Some(r)),
                },
                // Entry 2 committed in term 2: the term-1 proposal there lost.
                FsmTask::Apply { group: g, entries: vec![entry(1, 1, 5), entry(2, 2, 7)] },
            ],
            false,
        );
        assert_eq!(out, FsmOutput { applied: vec![(g, LogIndex(2))], snapshots: vec![] });
        assert!(read.lock().expect("l").is_none(), "the read waits for index 3");
        let got = std::mem::take(&mut *answers.lock().expect("l"));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().ok(), Some(&Bytes::from(vec![10u8])));
        assert!(matches!(got[1], Err(NodeError::Dropped)), "{:?}", got[1]);
        let out = steps.step([FsmTask::Apply { group: g, entries: vec![entry(3, 2, 1), entry(4, 2, 1)] }], false);
        assert_eq!(out, FsmOutput { applied: vec![(g, LogIndex(4))], snapshots: vec![(g, LogIndex(4))] });
        assert!(matches!(*read.lock().expect("l"), Some(Ok(LogIndex(4)))));
        assert_eq!(*sum.lock().expect("l"), 14);
        // Nothing to do and no poll due: nothing touched, nothing reported.
        assert_eq!(steps.step([], true), FsmOutput::default());
    }

    /// Installs only once told the disk has room.
    struct Installer {
        room: Arc<Mutex<bool>>,
        applied: Arc<Mutex<Vec<u64>>>,
    }

    impl StateMachine for Installer {
        fn apply(&mut self, index: LogIndex, _: &Bytes) -> Bytes {
            self.applied.lock().expect("test lock").push(index.0);
            Bytes::new()
        }

        fn restore(&mut self, _: &crate::core::SnapshotMeta) -> Result<Restore, String> {
            if *self.room.lock().expect("test lock") {
                Ok(Restore::Done)
            } else {
                Ok(Restore::RetryAfter(std::time::Duration::from_secs(1)))
            }
        }
    }

    /// An install the state machine asks to retry holds back every later
    /// task of its group, in order, until a poll finds it done (before: the
    /// FSM thread slept in a loop, which a simulation cannot run).
    #[test]
    fn an_install_to_retry_holds_back_what_follows_until_it_is_done() {
        let room = Arc::new(Mutex::new(false));
        let applied: Arc<Mutex<Vec<u64>>> = Arc::default();
        let g = GroupId(1);
        let sm = Installer { room: Arc::clone(&room), applied: Arc::clone(&applied) };
        let mut groups = HashMap::new();
        groups.insert(g, GroupFsm::new(Box::new(sm), LogIndex(0)));
        let mut steps = FsmSteps::new(groups);
        let meta = crate::core::SnapshotMeta { last_index: LogIndex(5), ..Default::default() };
        let out = steps.step(
            [FsmTask::Restore { group: g, meta }, FsmTask::Apply { group: g, entries: vec![entry(6, 1, 1)] }],
            false,
        );
        assert_eq!(out, FsmOutput::default(), "nothing applied behind the held install");
        assert!(steps.holding());
        assert_eq!(steps.next_poll(), Some(std::time::Duration::from_secs(1)));
        // Still no room: still held, and a later task queues behind.
        steps.step([FsmTask::Apply { group: g, entries: vec![entry(7, 1, 1)] }], true);
        assert!(steps.holding() && applied.lock().expect("l").is_empty());
        *room.lock().expect("l") = true;
        let out = steps.step([], true);
        assert_eq!(out.applied, vec![(g, LogIndex(7))]);
        assert_eq!(*applied.lock().expect("l"), vec![6, 7]);
        assert!(!steps.holding());
    }
}
