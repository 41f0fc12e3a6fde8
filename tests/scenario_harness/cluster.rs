//! The scenario cluster: a driver for several `RaftCore`s with a hand-run
//! network, disk and state machine per node, so a scenario decides exactly
//! when each message arrives, each write becomes durable and each entry is
//! applied.
//!
//! * Clocks: each node has its own; a fresh cluster starts every clock at
//!   1000ms (one election timeout after boot, so no node still refuses votes
//!   because it just started) with cores created at 0ms.
//! * Network: messages wait in one FIFO list until delivered or dropped.
//!   A message across a partition, or to a crashed node, is lost at send
//!   time (and at delivery time if the partition came later).
//! * Disk: each `Ready`'s writes become one pending write; `persist` makes
//!   them durable, releases the messages that waited for them and reports
//!   `on_persisted`. A crash loses the pending writes.
//! * State machine: the list of applied `Normal` payloads; its snapshot is
//!   those payloads joined with `,`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use ringraft::core::{
    Config, Entry, GroupId, HardState, LogIndex, LogOp, Membership, Message, MessageBody, NodeId, Payload, RaftCore,
    Ready, Recovered, SnapshotChunk, SnapshotMeta, Time,
};

use super::format;

/// The group every scenario runs.
pub const GROUP: GroupId = GroupId(1);

/// What a node keeps across a crash.
#[derive(Default)]
pub struct Disk {
    pub hard_state: HardState,
    /// The latest complete snapshot and its bytes (a bootstrap meta at 0 at
    /// first).
    pub snapshot: (SnapshotMeta, Bytes),
    /// A snapshot being received: its meta and the bytes so far.
    pub partial: Option<(SnapshotMeta, Vec<u8>)>,
    /// Log entries by index.
    pub log: BTreeMap<u64, Entry>,
}

/// Writes handed out by one `Ready`, waiting for `persist`.
struct Write {
    hard_state: Option<HardState>,
    log_ops: Vec<LogOp>,
    chunks: Vec<SnapshotChunk>,
    restore: Option<SnapshotMeta>,
    /// `Ready::persisted_messages` (and later ones that must wait too).
    held: Vec<Message>,
    point: Option<ringraft::core::PersistPoint>,
}

/// Work queued for the state machine.
enum Apply {
    Entries(Vec<Entry>),
    Restore(SnapshotMeta),
}

/// The applied state: payloads of `Normal` entries with their index.
#[derive(Default)]
pub struct StateMachine {
    pub applied: LogIndex,
    pub data: Vec<(LogIndex, String)>,
}

impl StateMachine {
    /// The snapshot bytes as of `index`.
    pub fn snapshot_bytes(&self, index: LogIndex) -> Bytes {
        let items: Vec<&str> = self.data.iter().filter(|(i, _)| *i <= index).map(|(_, s)| s.as_str()).collect();
        Bytes::from(items.join(","))
    }

    fn restore(meta: &SnapshotMeta, bytes: &Bytes) -> StateMachine {
        let text = String::from_utf8_lossy(bytes);
        let data = text.split(',').filter(|s| !s.is_empty()).map(|s| (meta.last_index, s.to_string())).collect();
        StateMachine { applied: meta.last_index, data }
    }
}

/// One server of the scenario cluster.
pub struct Node {
    /// `None` while crashed.
    pub core: Option<RaftCore>,
    pub clock: Time,
    pub cfg: Config,
    pub disk: Disk,
    writes: VecDeque<Write>,
    applies: VecDeque<Apply>,
    pub sm: StateMachine,
}

/// Knobs of the `cluster` command.
pub struct Options {
    pub cfg: Config,
    /// Bytes per `InstallSnapshot` chunk.
    pub chunk: usize,
}

/// The whole scenario world and its trace.
pub struct Cluster {
    pub nodes: BTreeMap<NodeId, Node>,
    /// Messages in flight, oldest first.
    pub net: Vec<Message>,
    /// Groups of nodes that can talk; empty when healed.
    pub partition: Vec<BTreeSet<NodeId>>,
    pub chunk: usize,
    /// Message kinds left out of the trace.
    pub hidden: BTreeSet<String>,
    pub out: Vec<String>,
}

impl Cluster {
    /// Boots `voters` and `learners` with that membership and `joining`
    /// nodes with none (they learn it from a leader).
    pub fn new(opts: Options, voters: &[NodeId], learners: &[NodeId], joining: &[NodeId]) -> Cluster {
        let membership = Membership {
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            ..Membership::default()
        };
        let mut nodes = BTreeMap::new();
        for &id in voters.iter().chain(learners).chain(joining) {
            let mut cfg = opts.cfg.clone();
            cfg.id = id;
            let boot = if joining.contains(&id) { Membership::default() } else { membership.clone() };
            let meta = SnapshotMeta { membership: boot, ..SnapshotMeta::default() };
            let disk = Disk { snapshot: (meta.clone(), Bytes::new()), ..Disk::default() };
            let recovered = Recovered { snapshot: meta, ..Recovered::default() };
            let core = RaftCore::new(cfg.clone(), recovered, Time(0));
            let node = Node {
                core: Some(core),
                clock: Time(0).plus_ms(1000),
                cfg,
                disk,
                writes: VecDeque::new(),
                applies: VecDeque::new(),
                sm: StateMachine::default(),
            };
            nodes.insert(id, node);
        }
        Cluster {
            nodes,
            net: Vec::new(),
            partition: Vec::new(),
            chunk: opts.chunk,
            hidden: BTreeSet::new(),
            out: Vec::new(),
        }
    }

    pub fn print(&mut self, line: String) {
        self.out.push(line);
    }

    /// The live core of `id`, if it exists and runs.
    pub fn core(&mut self, id: NodeId) -> Option<&mut RaftCore> {
        self.nodes.get_mut(&id).and_then(|n| n.core.as_mut())
    }

    pub fn live_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|(_, n)| n.core.is_some()).map(|(id, _)| *id).collect()
    }

    fn connected(&self, a: NodeId, b: NodeId) -> bool {
        self.partition.is_empty() || self.partition.iter().any(|g| g.contains(&a) && g.contains(&b))
    }

    /// Why a message from `from` to `to` cannot arrive, if it cannot.
    fn lost(&self, from: NodeId, to: NodeId) -> Option<String> {
        if !self.connected(from, to) {
            return Some("partition".into());
        }
        match self.nodes.get(&to) {
            None => Some(format!("{to} unknown")),
            Some(n) if n.core.is_none() => Some(format!("{to} down")),
            Some(_) => None,
        }
    }

    fn trace_msg(&mut self, m: &Message, suffix: &str) {
        if !self.hidden.contains(m.body.kind()) {
            let line = format!("{}{suffix}", format::message(m));
            self.print(line);
        }
    }

    /// Puts a message on the wire (or loses it).
    pub fn send(&mut self, m: Message) {
        match self.lost(m.from, m.to) {
            Some(why) => self.trace_msg(&m, &format!(" (lost: {why})")),
            None => {
                self.trace_msg(&m, "");
                self.net.push(m);
            }
        }
    }

    /// Takes and carries out the ready of `id`. Returns whether it held
    /// anything.
    pub fn process_ready(&mut self, id: NodeId) -> bool {
        let Some(core) = self.core(id) else { return false };
        let announced = core.has_ready();
        let rd = core.take_ready();
        if rd.is_empty() {
            return false;
        }
        if !announced {
            self.print(format!("BUG: {id} has_ready() was false but its ready held {rd:?}"));
        }
        self.handle_ready(id, rd);
        true
    }

    fn handle_ready(&mut self, id: NodeId, mut rd: Ready) {
        if let Some(ss) = rd.soft_state {
            let leader = if ss.leader.is_some() { format!(" leader={}", ss.leader) } else { String::new() };
            self.print(format!("{id} became {} t{}{leader}", format::role(ss.role), ss.term));
        }
        self.queue_write(id, &mut rd);
        for m in std::mem::take(&mut rd.messages) {
            self.send(m);
        }
        for m in std::mem::take(&mut rd.snapshot_sends) {
            let m = self.fill_snapshot_chunk(id, m);
            self.send(m);
        }
        if let (Some(first), Some(last)) = (rd.committed_entries.first(), rd.committed_entries.last()) {
            self.print(format!("{id} committed {}..{}", first.index, last.index));
            let node = self.nodes.get_mut(&id).expect("live node");
            node.applies.push_back(Apply::Entries(std::mem::take(&mut rd.committed_entries)));
        }
        for r in &rd.read_states {
            self.print(format!("{id} read {} ok index={}", r.id, r.index));
        }
        for r in &rd.failed_reads {
            self.print(format!("{id} read {r} failed"));
        }
    }

    /// Turns a ready's durable part into a pending write; messages that
    /// must wait for durability wait for it (or for earlier pending writes).
    fn queue_write(&mut self, id: NodeId, rd: &mut Ready) {
        let needs_write = rd.needs_write() || rd.restore_snapshot.is_some();
        let held = std::mem::take(&mut rd.persisted_messages);
        let node = self.nodes.get_mut(&id).expect("live node");
        if !needs_write {
            match node.writes.back_mut() {
                Some(w) => w.held.extend(held),
                None => {
                    for m in held {
                        self.send(m);
                    }
                }
            }
            return;
        }
        let point = rd.persist_point();
        let w = Write {
            hard_state: rd.hard_state,
            log_ops: std::mem::take(&mut rd.log_ops),
            chunks: std::mem::take(&mut rd.snapshot_chunks),
            restore: rd.restore_snapshot.take(),
            held,
            point,
        };
        let mut parts = Vec::new();
        if let Some(hs) = w.hard_state {
            parts.push(format!("hs t{} vote={}", hs.term, hs.vote));
        }
        for c in &w.chunks {
            let done = if c.done { " done" } else { "" };
            let (i, t) = (c.meta.last_index, c.meta.last_term);
            parts.push(format!("snapshot {i}/{t} chunk off={} len={}{done}", c.offset, c.data.len()));
        }
        parts.extend(w.log_ops.iter().map(format::log_op));
        node.writes.push_back(w);
        self.print(format!("{id} write: {}", parts.join(", ")));
    }

    fn fill_snapshot_chunk(&mut self, id: NodeId, mut m: Message) -> Message {
        let chunk = self.chunk;
        let (meta, mut bytes) = self.nodes[&id].disk.snapshot.clone();
        if let MessageBody::InstallSnapshot { meta: want, offset, data, done, .. } = &mut m.body {
            if want.last_index < meta.last_index {
                // An older snapshot still in transfer: its bytes, as the
                // state machine had them then.
                bytes = self.nodes[&id].sm.snapshot_bytes(want.last_index);
            } else if *want != meta {
                self.print(format!(
                    "BUG: {id} asked to send snapshot {} but stores {}",
                    want.last_index, meta.last_index
                ));
            }
            let start = (*offset as usize).min(bytes.len());
            let end = (start + chunk).min(bytes.len());
            *data = bytes.slice(start..end);
            *done = end == bytes.len();
        }
        m
    }

    /// Whether `id` has writes waiting for `persist`.
    pub fn has_writes(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|n| !n.writes.is_empty())
    }

    /// Whether `id` has committed entries waiting for `apply`.
    pub fn has_applies(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|n| !n.applies.is_empty())
    }

    /// Makes the first `count` pending writes of `id` durable (all when
    /// `None`), sends what waited for them and reports `on_persisted`.
    pub fn persist(&mut self, id: NodeId, count: Option<usize>) {
        let node = self.nodes.get_mut(&id).expect("node checked by caller");
        let n = count.unwrap_or(node.writes.len()).min(node.writes.len());
        let writes: Vec<Write> = node.writes.drain(..n).collect();
        if writes.is_empty() {
            self.print(format!("{id} has nothing to persist"));
            return;
        }
        let mut held = Vec::new();
        let mut point = None;
        let mut hs = None;
        let mut chunks = 0;
        for w in writes {
            chunks += w.chunks.len();
            apply_write(&mut node.disk, &w);
            if let Some(meta) = &w.restore {
                node.applies.push_back(Apply::Restore(meta.clone()));
            }
            hs = w.hard_state.or(hs);
            point = w.point.or(point);
            held.extend(w.held);
        }
        let mut what = Vec::new();
        if let Some(hs) = hs {
            what.push(format!("hs t{} vote={}", hs.term, hs.vote));
        }
        if chunks > 0 {
            what.push("snapshot chunk".to_string());
        }
        if let Some(p) = point {
            what.push(format!("log to {}/{}", p.index, p.term));
        }
        let what = if what.is_empty() { String::new() } else { format!(" {}", what.join(", ")) };
        self.print(format!("{id} persisted{what}"));
        for m in held {
            self.send(m);
        }
        if let Some(p) = point {
            self.core(id).expect("live node").on_persisted(p);
        }
        self.process_ready(id);
    }

    /// Applies everything committed on `id` and reports `on_applied`.
    pub fn apply(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node checked by caller");
        let items: Vec<Apply> = node.applies.drain(..).collect();
        if items.is_empty() {
            self.print(format!("{id} has nothing to apply"));
            return;
        }
        let mut lines = Vec::new();
        for item in items {
            match item {
                Apply::Entries(es) => {
                    for e in &es {
                        if let Payload::Normal(b) = &e.payload {
                            node.sm.data.push((e.index, String::from_utf8_lossy(b).into_owned()));
                        }
                    }
                    let (a, b) = (es[0].index, es[es.len() - 1].index);
                    node.sm.applied = b;
                    lines.push(format!("{id} applied {a}..{b}"));
                }
                Apply::Restore(meta) => {
                    node.sm = StateMachine::restore(&meta, &node.disk.snapshot.1);
                    lines.push(format!("{id} restored snapshot {}/{}", meta.last_index, meta.last_term));
                }
            }
        }
        let applied = node.sm.applied;
        self.out.extend(lines);
        self.core(id).expect("live node").on_applied(applied);
        self.process_ready(id);
    }

    /// Steps `msgs` into their receivers, then takes each receiver's ready
    /// (one batch per receiver).
    pub fn deliver(&mut self, msgs: Vec<Message>) {
        let mut touched = BTreeSet::new();
        for m in msgs {
            if let Some(why) = self.lost(m.from, m.to) {
                self.trace_msg(&m, &format!(" (dropped: {why})"));
                continue;
            }
            let to = m.to;
            let node = self.nodes.get_mut(&to).expect("receiver checked by lost()");
            let now = node.clock;
            node.core.as_mut().expect("receiver checked by lost()").step(now, m);
            touched.insert(to);
        }
        for id in touched {
            self.process_ready(id);
        }
    }

    /// Fires the timers of `id` that are due at its clock.
    pub fn tick(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node checked by caller");
        let now = node.clock;
        if let Some(core) = node.core.as_mut() {
            core.tick(now);
            let mark = self.out.len();
            if self.process_ready(id) && self.out.len() > mark {
                self.out.insert(mark, format!("{id} tick @{}", format::time(now)));
            }
        }
    }

    /// Loses the core, its pending writes and applies, its state machine and
    /// the messages in flight to it.
    pub fn crash(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node checked by caller");
        node.core = None;
        let lost: Vec<String> =
            node.writes.drain(..).flat_map(|w| w.log_ops.iter().map(format::log_op).collect::<Vec<_>>()).collect();
        node.applies.clear();
        node.sm = StateMachine::default();
        let lost = if lost.is_empty() { String::new() } else { format!(", lost unpersisted {}", lost.join(", ")) };
        self.print(format!("{id} crashed{lost}"));
        let (to_it, rest): (Vec<Message>, Vec<Message>) = self.net.drain(..).partition(|m| m.to == id);
        self.net = rest;
        for m in to_it {
            self.trace_msg(&m, &format!(" (dropped: {id} down)"));
        }
    }

    /// Starts `id` again from its disk, at its clock.
    pub fn restart(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node checked by caller");
        let (meta, bytes) = node.disk.snapshot.clone();
        let mut entries = Vec::new();
        for (i, e) in node.disk.log.range(meta.last_index.0 + 1..) {
            if *i != meta.last_index.0 + 1 + entries.len() as u64 {
                break;
            }
            entries.push(e.clone());
        }
        let line = format!(
            "{id} restarted: hs t{} vote={}, snapshot {}/{}, log {}",
            node.disk.hard_state.term,
            node.disk.hard_state.vote,
            meta.last_index,
            meta.last_term,
            if entries.is_empty() { "empty".to_string() } else { format::entries(&entries) }
        );
        // The harness clock runs on across restarts: epoch 0 is enough.
        let recovered = Recovered {
            hard_state: node.disk.hard_state,
            snapshot: meta.clone(),
            entries,
            applied: meta.last_index,
            epoch: 0,
        };
        node.sm = StateMachine::restore(&meta, &bytes);
        node.core = Some(RaftCore::new(node.cfg.clone(), recovered, node.clock));
        self.print(line);
    }
}

/// Carries out one write on a disk, in the order the `Ready` docs give.
fn apply_write(disk: &mut Disk, w: &Write) {
    if let Some(hs) = w.hard_state {
        disk.hard_state = hs;
    }
    for c in &w.chunks {
        let mut bytes = match disk.partial.take() {
            Some((meta, bytes)) if meta == c.meta && c.offset > 0 => bytes,
            _ => Vec::new(),
        };
        bytes.truncate(c.offset as usize);
        bytes.extend_from_slice(&c.data);
        if c.done {
            disk.snapshot = (c.meta.clone(), Bytes::from(bytes));
        } else {
            disk.partial = Some((c.meta.clone(), bytes));
        }
    }
    for op in &w.log_ops {
        match op {
            LogOp::Append(es) => {
                let first = es[0].index.0;
                let _ = disk.log.split_off(&first);
                disk.log.extend(es.iter().map(|e| (e.index.0, e.clone())));
            }
            LogOp::Purge(i) => disk.log = disk.log.split_off(&(i.0 + 1)),
            LogOp::Reset(_) => disk.log.clear(),
        }
    }
}
