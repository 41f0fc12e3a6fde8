//! The driver contract of the core, carried out for a simulated node.
//!
//! After each input the world calls [`World::drive`]: it takes the core's
//! `Ready` (at once, or a little later so that several inputs share one, as
//! a batching driver would) and does what src/core/ready.rs asks, in that
//! order: hard state,
//! snapshot chunks and log ops become one write job on the node's ordered
//! disk queue; `messages` go out now; `persisted_messages` wait for the job;
//! `snapshot_sends` are filled from the stored snapshot; committed entries
//! and snapshot restores queue for the state machine. Replaying the log ops
//! also keeps the node's log mirror (term and chain hash per index), which
//! the checker reads.

use bytes::BytesMut;

use ringraft::core::{LogIndex, LogOp, Message, MessageBody, Ready, Role, SnapshotMeta};

use super::checker::{Check, Violation};
use super::disk::{StoredSnapshot, WriteItem};
use super::mirror::Mirror;
use super::model::{chain_next, payload_id, Model};
use super::node::ApplyItem;
use super::trace::Ev;
use super::world::{EventKind, World};

/// Most `take_ready` rounds after one input (each round may queue more).
const READY_ROUNDS_MAX: usize = 8;

fn storage(e: String) -> Violation {
    Violation::new("storage", e)
}

impl World {
    /// The node just took an input. With `Knobs::ready_batch_us` at 0 its
    /// `Ready` is carried out now; otherwise a flush is scheduled a little
    /// later, so inputs arriving meanwhile share one `Ready`, as in a driver
    /// that drains its intake ring in batches.
    pub(crate) fn drive(&mut self, n: usize) -> Check {
        self.observe(n)?;
        if self.k.ready_batch_us == 0 || self.healing {
            return self.flush(n);
        }
        let node = &mut self.nodes[n];
        if node.core.is_none() || node.flush_scheduled {
            return Ok(());
        }
        node.flush_scheduled = true;
        let inc = node.incarnation;
        let at = self.now + self.rng_disk.range(0, self.k.ready_batch_us);
        self.schedule(at, EventKind::Flush { node: n, inc });
        Ok(())
    }

    /// The scheduled flush of `drive`.
    pub(crate) fn on_flush(&mut self, n: usize, inc: u64) -> Check {
        if self.nodes[n].incarnation != inc || !self.nodes[n].flush_scheduled {
            return Ok(());
        }
        self.flush(n)
    }

    /// Takes and carries out the node's `Ready` (until it has nothing more),
    /// then runs the per-step checks and re-arms its timer.
    fn flush(&mut self, n: usize) -> Check {
        self.nodes[n].flush_scheduled = false;
        for _ in 0..READY_ROUNDS_MAX {
            let Some(core) = self.nodes[n].core.as_mut() else { return Ok(()) };
            let rd = core.take_ready();
            self.carry_out(n, rd)?;
            if !self.nodes[n].core.as_ref().is_some_and(|c| c.has_ready()) {
                break;
            }
        }
        self.check_node(n)?;
        self.arm_timer(n);
        Ok(())
    }

    fn carry_out(&mut self, n: usize, mut rd: Ready) -> Check {
        let persist_point = rd.persist_point();
        let mut items = Vec::new();
        if let Some(hs) = rd.hard_state {
            items.push(WriteItem::HardState(hs));
        }
        let received = self.take_chunks(n, &mut rd, &mut items)?;
        self.replay_log_ops(n, std::mem::take(&mut rd.log_ops), &received, &mut items)?;
        for m in std::mem::take(&mut rd.messages) {
            self.send(m)?;
        }
        if !items.is_empty() || !rd.persisted_messages.is_empty() {
            let slow = self.now < self.nodes[n].slow_disk_until;
            let k = &self.k;
            let (lo, hi) = if slow {
                (k.slow_disk_min_us, k.slow_disk_max_us)
            } else {
                (k.disk_delay_min_us, k.disk_delay_max_us)
            };
            let delay = self.rng_disk.range(lo, hi);
            let node = &mut self.nodes[n];
            let msgs = std::mem::take(&mut rd.persisted_messages);
            let (job, at) = node.disk.submit(items, msgs, persist_point, self.now, delay);
            let inc = node.incarnation;
            self.schedule(at, EventKind::DiskDone { node: n, inc, job });
        }
        for m in std::mem::take(&mut rd.snapshot_sends) {
            self.send_snapshot_chunk(n, m)?;
        }
        if let Some(meta) = rd.restore_snapshot.take() {
            let Some(s) = received.into_iter().rev().find(|s| s.meta == meta) else {
                return Err(Violation::new(
                    "snapshot",
                    format!("n{} asked to restore {meta:?} it never received", n + 1),
                ));
            };
            self.queue_apply(n, ApplyItem::Restore(meta, s.data));
        }
        if !rd.committed_entries.is_empty() {
            self.queue_apply(n, ApplyItem::Entries(std::mem::take(&mut rd.committed_entries)));
        }
        self.on_read_results(n, &rd.read_states, &rd.failed_reads)
    }

    /// Assembles received snapshot chunks; a completed snapshot becomes a
    /// write item (and is returned for `LogOp::Reset` and the restore).
    fn take_chunks(
        &mut self,
        n: usize,
        rd: &mut Ready,
        items: &mut Vec<WriteItem>,
    ) -> Result<Vec<StoredSnapshot>, Violation> {
        let mut done = Vec::new();
        let node = &mut self.nodes[n];
        for ch in std::mem::take(&mut rd.snapshot_chunks) {
            if ch.offset == 0 {
                node.rx_snapshot = Some((ch.meta.clone(), BytesMut::new()));
            }
            match node.rx_snapshot.as_mut() {
                Some((m, buf)) if *m == ch.meta && buf.len() as u64 == ch.offset => buf.extend_from_slice(&ch.data),
                other => {
                    return Err(Violation::new(
                        "snapshot",
                        format!(
                            "n{} got chunk at offset {} of {:?}, but holds {:?}",
                            node.id,
                            ch.offset,
                            ch.meta.last_index,
                            other.map(|(m, b)| (m.last_index, b.len()))
                        ),
                    ))
                }
            }
            if ch.done {
                let Some((meta, buf)) = node.rx_snapshot.take() else { continue };
                let data = buf.freeze();
                let model = Model::decode(&data).map_err(|e| Violation::new("snapshot", e))?;
                if model.applied != meta.last_index.0 || model.applied_term != meta.last_term.0 {
                    return Err(Violation::new(
                        "snapshot",
                        format!(
                            "n{} received bytes of ({}, {}) for meta {:?}",
                            node.id, model.applied, model.applied_term, meta
                        ),
                    ));
                }
                let s = StoredSnapshot { meta, data, chain: model.chain };
                items.push(WriteItem::Snapshot(s.clone()));
                done.push(s);
            }
        }
        Ok(done)
    }

    /// Replays log ops on the node's mirror (checking log matching for each
    /// new entry) and turns them into write items carrying chain hashes.
    fn replay_log_ops(
        &mut self,
        n: usize,
        ops: Vec<LogOp>,
        received: &[StoredSnapshot],
        items: &mut Vec<WriteItem>,
    ) -> Check {
        let node = &mut self.nodes[n];
        let id = node.id.0;
        // A follower's entries came from a leader's message: they exist.
        let record = node.core.as_ref().is_some_and(|c| c.role() != Role::Leader);
        for op in ops {
            match op {
                LogOp::Append(entries) => {
                    let Some(first) = entries.first() else { continue };
                    let Some((_, mut chain)) = node.mirror.at(first.index.0 - 1) else {
                        return Err(storage(format!("n{id} appends at {} after a compacted index", first.index)));
                    };
                    let mut out = Vec::with_capacity(entries.len());
                    for e in entries {
                        chain = chain_next(chain, &e);
                        node.mirror.put(e.index.0, e.term.0, chain).map_err(storage)?;
                        self.checker.on_log_entry(id, e.index.0, e.term.0, chain, record)?;
                        out.push((e, chain));
                    }
                    items.push(WriteItem::Append(out));
                }
                LogOp::Purge(i) => {
                    node.mirror.purge(i.0).map_err(storage)?;
                    items.push(WriteItem::Purge(i));
                }
                LogOp::Reset(meta) => {
                    let Some(s) = received.iter().rev().find(|s| s.meta == meta) else {
                        return Err(storage(format!("n{id} resets its log to {meta:?} without the snapshot")));
                    };
                    node.mirror = Mirror::new(meta.last_index.0, meta.last_term.0, s.chain);
                    items.push(WriteItem::Reset(meta.last_index, s.chain));
                }
            }
        }
        Ok(())
    }

    /// Fills an `InstallSnapshot` from the stored snapshot, or an older one
    /// kept for transfers, and sends it (or drops it when neither is the one
    /// it names).
    fn send_snapshot_chunk(&mut self, n: usize, mut m: Message) -> Check {
        let node = &self.nodes[n];
        let chunk = self.k.snapshot_chunk_bytes as u64;
        if let MessageBody::InstallSnapshot { meta, offset, data, done, content } = &mut m.body {
            let stored = std::iter::once(&node.disk.durable.snapshot)
                .chain(node.sending.iter().rev())
                .find(|s| s.meta.last_index == meta.last_index);
            let Some(stored) = stored else { return Ok(()) };
            let len = stored.data.len() as u64;
            if *offset > len {
                return Ok(());
            }
            let end = (*offset + chunk).min(len);
            *data = stored.data.slice(*offset as usize..end as usize);
            *done = end == len;
            *meta = stored.meta.clone();
            // The content checksum (never 0: 0 means unknown).
            *content = super::rng::fnv1a(&stored.data).max(1);
        }
        self.send(m)
    }

    fn queue_apply(&mut self, n: usize, item: ApplyItem) {
        let delay = if self.k.apply_delay_max_us == 0 { 0 } else { self.rng_disk.range(0, self.k.apply_delay_max_us) };
        let node = &mut self.nodes[n];
        let at = (self.now + delay).max(node.apply_last_at);
        node.apply_last_at = at;
        node.apply_queue.push_back((at, item));
        let inc = node.incarnation;
        self.schedule(at, EventKind::Apply { node: n, inc });
    }

    /// The node's oldest write completed: make it durable, release what
    /// waited for it, report the persist point.
    pub(crate) fn on_disk_done(&mut self, n: usize, inc: u64, job: u64) -> Check {
        let node = &mut self.nodes[n];
        if node.incarnation != inc || !node.up() {
            return Ok(());
        }
        let id = node.id.0;
        let done = node.disk.complete(job).map_err(|e| storage(format!("n{id}: {e}")))?;
        for item in &done.items {
            if let WriteItem::Append(es) = item {
                for (e, chain) in es {
                    self.checker.on_log_entry(id, e.index.0, e.term.0, *chain, true)?;
                }
            }
        }
        let point = done.persist_point;
        self.trace.record(self.now, Ev::Persisted { node: id, job, index: point.map(|p| p.index.0).unwrap_or(0) });
        for m in done.persisted_messages {
            self.send(m)?;
        }
        if let Some(point) = point {
            if let Some(core) = self.nodes[n].core.as_mut() {
                core.on_persisted(point);
            }
        }
        self.drive(n)
    }

    /// Applies every queue item that is due, then reports the applied index.
    pub(crate) fn on_apply_due(&mut self, n: usize, inc: u64) -> Check {
        if self.nodes[n].incarnation != inc || !self.nodes[n].up() {
            return Ok(());
        }
        let before = self.nodes[n].model.applied;
        while self.nodes[n].apply_queue.front().is_some_and(|(at, _)| *at <= self.now) {
            let Some((_, item)) = self.nodes[n].apply_queue.pop_front() else { break };
            match item {
                ApplyItem::Entries(es) => {
                    for e in &es {
                        self.apply_entry(n, e)?;
                    }
                }
                ApplyItem::Restore(meta, data) => self.restore(n, &meta, &data)?,
            }
        }
        let node = &mut self.nodes[n];
        if node.model.applied != before {
            self.trace.record(self.now, Ev::Applied { node: node.id.0, index: node.model.applied });
            if let Some(core) = node.core.as_mut() {
                core.on_applied(LogIndex(node.model.applied));
            }
        }
        self.drive(n)
    }

    fn apply_entry(&mut self, n: usize, e: &ringraft::core::Entry) -> Check {
        let node = &mut self.nodes[n];
        let id = node.id.0;
        let index = e.index.0;
        if index != node.model.applied + 1 {
            return Err(Violation::new("apply-order", format!("n{id} applies {index} after {}", node.model.applied)));
        }
        node.model.apply(e);
        let chain = node.model.chain;
        if let Some((_, c)) = node.mirror.at(index) {
            if c != chain {
                return Err(Violation::new("apply-mismatch", format!("n{id} applies {index} unlike its own log")));
            }
        }
        let pid = payload_id(e).unwrap_or(0);
        let first = self.checker.on_apply(id, index, e.term.0, chain, pid)?;
        if first && matches!(&e.payload, ringraft::core::Payload::Config(m) if m.is_joint()) {
            self.stats.joint_confs += 1;
        }
        if let Some(expected) = node.pending.remove(&index) {
            if expected == pid {
                self.checker.on_ack(pid, index);
                self.stats.acked += 1;
            }
        }
        Ok(())
    }

    fn restore(&mut self, n: usize, meta: &SnapshotMeta, data: &[u8]) -> Check {
        let node = &mut self.nodes[n];
        let id = node.id.0;
        let model = Model::decode(data).map_err(|e| Violation::new("snapshot", e))?;
        if model.applied <= node.model.applied {
            return Err(Violation::new(
                "snapshot",
                format!("n{id} restores snapshot {} over applied {}", model.applied, node.model.applied),
            ));
        }
        self.checker.on_restore(id, meta.last_index.0, meta.last_term.0, model.chain)?;
        node.model = model;
        // Proposals inside the snapshot can no longer be matched to an
        // apply: their fate is unknown (not acknowledged).
        let keep = node.pending.split_off(&(model.applied + 1));
        node.pending = keep;
        self.stats.snapshot_installs += 1;
        self.trace.record(self.now, Ev::Fault { what: "snapshot restored", a: id, b: model.applied });
        Ok(())
    }

    /// Schedules the node's next tick at its core's deadline (on its clock).
    fn arm_timer(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        let Some(core) = node.core.as_ref() else { return };
        let deadline = core.next_deadline();
        if deadline == ringraft::core::Time::NEVER {
            return;
        }
        let at = node.clock.sim_time_of(deadline, self.now);
        if at < node.tick_at {
            node.tick_at = at;
            let inc = node.incarnation;
            self.schedule(at, EventKind::Tick { node: n, inc });
        }
    }
}
