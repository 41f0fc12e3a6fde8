//! The actors outside the nodes: the clients (their requests reach a node
//! as the service's front end takes them; answers come back through the
//! outbox) and the nemesis (its faults, the drill).

use std::sync::Arc;

use bytes::Bytes;

use super::*;

impl NodeWorld {
    // ---- clients ----

    pub(super) fn client_act(&mut self, c: usize) -> Check {
        if self.healing {
            return Ok(());
        }
        let next = self.now + self.rng_client.range(1, 2 * self.nk.client_interval_us);
        self.schedule(next, Ev::ClientAct { c });
        let cl = &self.clients[c];
        if cl.session == 0 {
            if cl.opening.is_none() {
                let op = self.new_op(c, Req::Cmd(Command::OpenSession { ttl_ms: self.nk.session_ttl_ms }), 0, 0);
                self.clients[c].opening = Some(op);
                self.send_op(op);
            }
            return Ok(());
        }
        if cl.inflight.len() >= self.nk.client_inflight_max {
            return Ok(());
        }
        let stream = STREAMS[self.rng_client.index(STREAMS.len())].to_string();
        let session = cl.session;
        let seq = cl.next_seq + 1;
        let roll = self.rng_client.below(100);
        let (req, sessioned) = if roll < 65 {
            let n = self.clients[c].appended + 1;
            self.clients[c].appended = n;
            let value = Bytes::from(format!("c{c}-{n}"));
            (Req::Cmd(Command::Append { stream, session, seq, records: vec![value] }), true)
        } else if roll < 85 {
            let mode = [Consistency::Linearizable, Consistency::Lease, Consistency::Follower][self.rng_client.index(3)];
            let seen = self.clients[c].seen.get(&stream).map_or(0, |s| s.1);
            let from = if seen > 0 { self.rng_client.below(seen) } else { 0 };
            (Req::Read { stream, from, mode }, false)
        } else if roll < 92 {
            let cmd = Command::Create {
                stream,
                retention_bytes: self.nk.retention_bytes,
                retention_age_ms: self.nk.retention_age_ms,
                session,
                seq,
            };
            (Req::Cmd(cmd), true)
        } else if roll < 97 {
            let seen = self.clients[c].seen.get(&stream).map_or(0, |s| s.1);
            let before = self.rng_client.below(seen + 1);
            (Req::Cmd(Command::Trim { stream, before, session, seq }), true)
        } else {
            let inc =
                if self.rng_client.percent(50) { 0 } else { self.clients[c].seen.get(&stream).map_or(0, |s| s.0) };
            (Req::Cmd(Command::Delete { stream, session, seq, incarnation: inc }), true)
        };
        let (s, q) = if sessioned {
            self.clients[c].next_seq = seq;
            (session, seq)
        } else {
            (0, 0)
        };
        let op = self.new_op(c, req, s, q);
        self.clients[c].inflight.push(op);
        self.send_op(op);
        Ok(())
    }

    pub(super) fn new_op(&mut self, client: usize, req: Req, session: u64, seq: u64) -> usize {
        self.note(format!(
            "client {client} op {} invokes {} (session {session} seq {seq})",
            self.ops.len(),
            req_short(&req)
        ));
        self.ops.push(HOp {
            client,
            req,
            session,
            seq,
            invoked: self.now,
            attempts: 0,
            answers: Vec::new(),
            done: false,
        });
        self.ops.len() - 1
    }

    /// Sends the next attempt of `op` to the node the client believes
    /// leads (or any, for a follower read or without a belief).
    pub(super) fn send_op(&mut self, op: usize) {
        let c = self.ops[op].client;
        self.ops[op].attempts += 1;
        let attempt = self.ops[op].attempts;
        let follower = matches!(self.ops[op].req, Req::Read { mode: Consistency::Follower, .. });
        let n = match self.clients[c].leader {
            Some(l) if !follower && self.rng_client.percent(90) => l,
            _ => self.rng_client.index(self.nodes()),
        };
        let delay = self.rng_net.range(self.k.net_delay_min_us, self.k.net_delay_max_us + 1);
        self.schedule(self.now + delay, Ev::Request { n, op, attempt });
        self.schedule(self.now + self.nk.client_timeout_us, Ev::Timeout { op, attempt });
    }

    /// Node `n` takes a client's request, as the service's front end does.
    pub(super) fn request(&mut self, n: usize, op: usize, _attempt: u32) -> Check {
        let now = self.now;
        let wall = self.procs[n].wall_ms(now);
        let outbox = Arc::clone(&self.outbox);
        let req = self.ops[op].req.clone();
        let mut jump = None;
        let Some(life) = self.procs[n].life.as_mut() else { return Ok(()) };
        let t = life.time(now);
        let leader = life.gc.core.role() == Role::Leader;
        let hint = life.gc.core.leader();
        let not_leader = move |outbox: &Outbox| {
            outbox.lock().push((op, Reply::NotProposed(hint.is_some().then_some(hint.0))));
        };
        match req {
            Req::Cmd(command) => {
                if !leader {
                    not_leader(&outbox);
                    return Ok(());
                }
                let seen = life.seen.get();
                let watch = &life.gc.watch;
                let term = watch.term();
                let caught_up = || watch.caught_up();
                let Some(stamp) = life.log_clock.stamp_as_leader(term, wall, life.seen.now(), seen, caught_up) else {
                    // As the front end: Busy, nothing proposed.
                    outbox.lock().push((op, Reply::NotProposed(Some(life.id().0))));
                    return Ok(());
                };
                if stamp > seen.0 + 5_000 {
                    jump = Some(format!(
                        "n{} stamps log time {stamp}, {} ms past the {} it applied (wall clock {wall})",
                        n + 1,
                        stamp - seen.0,
                        seen.0
                    ));
                }
                let data = Stamped { time_ms: stamp, command }
                    .encode()
                    .map_err(|e| Violation::new("client", format!("a simulated command does not encode: {e}")))?;
                match life.gc.core.propose_batch(std::iter::once(data)) {
                    Ok((first, _)) => {
                        let term = life.gc.core.term();
                        let o = Arc::clone(&outbox);
                        let done = Callback::new(move |r: Result<Bytes, NodeError>| {
                            let reply = match r {
                                Ok(out) => Reply::of_outcome(&out),
                                Err(NodeError::Dropped) => Reply::NotProposed(None),
                                Err(_) => Reply::Unknown,
                            };
                            o.lock().push((op, reply));
                        });
                        life.fsm_q.push_back(ringraft::pipeline::FsmTask::Register {
                            group: GROUP,
                            term,
                            first,
                            done: vec![done],
                        });
                    }
                    Err(_) => not_leader(&outbox),
                }
            }
            Req::Read { stream, from, mode } => {
                let mode = match mode {
                    Consistency::Linearizable | Consistency::Lease if !leader => {
                        not_leader(&outbox);
                        return Ok(());
                    }
                    Consistency::Linearizable | Consistency::Follower => ReadMode::ReadIndex,
                    Consistency::Lease => ReadMode::Lease,
                };
                let state = Arc::clone(&life.state);
                let o = Arc::clone(&outbox);
                let done = Callback::new(move |r: Result<LogIndex, NodeError>| {
                    let reply = match r {
                        Ok(_) => {
                            let st = state.lock();
                            let inc = st.streams.get(&stream).map_or(0, |s| s.id);
                            match st.read(&stream, from, 1 << 20, 1 << 30) {
                                Ok(recs) => Reply::Read {
                                    inc,
                                    from: recs.first_offset,
                                    next: recs.next_offset,
                                    values: recs.records,
                                },
                                Err((code, _)) => Reply::Refused(code),
                            }
                        }
                        Err(_) => Reply::ReadFailed,
                    };
                    o.lock().push((op, reply));
                });
                let id = ReadId(life.next_read);
                life.next_read += 1;
                life.gc.read(t, id, mode, done);
            }
        }
        if let Some(line) = jump {
            self.note(line);
        }
        self.drive(n)
    }

    /// Sends the nodes' answers on their way to the clients.
    pub(super) fn flush_outbox(&mut self) {
        let out = std::mem::take(&mut *self.outbox.lock());
        for (op, reply) in out {
            let delay = self.rng_net.range(self.k.net_delay_min_us, self.k.net_delay_max_us + 1);
            self.schedule(self.now + delay, Ev::Answer { op, reply });
        }
    }

    pub(super) fn on_answer(&mut self, op: usize, reply: Reply) -> Check {
        let c = self.ops[op].client;
        let now = self.now;
        self.note(format!("client {c} op {op} answered {}", short(&reply)));
        self.ops[op].answers.push((now, reply.clone()));
        if self.ops[op].done {
            return Ok(());
        }
        let retry = match &reply {
            Reply::NotProposed(hint) => {
                self.clients[c].leader = hint.map(|l| l as usize - 1);
                true
            }
            Reply::Unknown | Reply::ReadFailed => self.ops[op].session != 0 || self.is_read(op),
            Reply::Refused(ErrorCode::SessionExpired) => {
                self.clients[c].session = 0;
                false
            }
            _ => false,
        };
        if let Reply::Ok(a, b) = reply {
            self.learn(op, a, b);
        }
        if let Reply::Read { inc, next, .. } = &reply {
            if let Req::Read { stream, .. } = &self.ops[op].req {
                self.clients[c].seen.insert(stream.clone(), (*inc, *next));
            }
        }
        if retry && self.ops[op].attempts < 4 && !self.healing {
            self.send_op(op);
        } else {
            self.finish(op);
        }
        Ok(())
    }

    pub(super) fn is_read(&self, op: usize) -> bool {
        matches!(self.ops[op].req, Req::Read { .. })
    }

    /// What a successful answer teaches the client.
    pub(super) fn learn(&mut self, op: usize, a: u64, _b: u64) {
        let c = self.ops[op].client;
        match &self.ops[op].req {
            Req::Cmd(Command::OpenSession { .. }) => {
                self.clients[c].session = a;
                self.clients[c].next_seq = 0;
            }
            Req::Cmd(Command::Append { stream, .. }) => {
                let e = self.clients[c].seen.entry(stream.clone()).or_insert((0, 0));
                e.1 = e.1.max(a + 1);
            }
            Req::Cmd(Command::Create { stream, .. }) => {
                self.clients[c].seen.insert(stream.clone(), (a, 0));
            }
            _ => {}
        }
    }

    pub(super) fn on_timeout(&mut self, op: usize, attempt: u32) -> Check {
        if self.ops[op].done || self.ops[op].attempts != attempt {
            return Ok(());
        }
        self.clients[self.ops[op].client].leader = None;
        if (self.ops[op].session != 0 || self.is_read(op)) && attempt < 4 && !self.healing {
            self.send_op(op);
        } else {
            self.finish(op);
        }
        Ok(())
    }

    pub(super) fn finish(&mut self, op: usize) {
        self.ops[op].done = true;
        let c = self.ops[op].client;
        self.clients[c].inflight.retain(|o| *o != op);
        if self.clients[c].opening == Some(op) {
            self.clients[c].opening = None;
        }
    }

    // ---- the nemesis ----

    pub(super) fn nemesis(&mut self) -> Check {
        if self.healing {
            return Ok(());
        }
        let next = self.now + self.rng_nemesis.range(1, 2 * self.k.nemesis_interval_us);
        self.schedule(next, Ev::Nemesis);
        if self.drill != Drill::Idle {
            // The drill's partitions stand until it is over.
            return Ok(());
        }
        let w = self.nk.weights;
        match self.rng_nemesis.weighted(&w) {
            0 => {
                let side = self.rng_nemesis.range(1, (1 << self.nodes()) - 1);
                self.net.split(side);
                self.stats.fault(FaultKind::Partition);
                let g = self.net.generation;
                let d = self.rng_nemesis.range(10_000, self.k.fault_duration_max_us);
                self.schedule(self.now + d, Ev::NetHeal { generation: g });
                self.note(format!("partition {side:b}"));
            }
            1 => {
                self.net.heal();
                self.note("heal".into());
            }
            2 => {
                // A minority down at most (one of three, two of five).
                let down = self.procs.iter().filter(|p| !p.up()).count();
                if down >= (self.nodes() - 1) / 2 {
                    return Ok(());
                }
                let n = self.rng_nemesis.index(self.nodes());
                if self.rng_nemesis.percent(self.nk.crash_mid_op_percent) {
                    let most = if self.rng_nemesis.percent(50) { 30 } else { 400 };
                    let ops = self.rng_nemesis.range(1, most);
                    self.procs[n].fs.crash_after(ops);
                    self.note(format!("n{} will crash at its {ops}th file operation from now", n + 1));
                } else {
                    self.note(format!("n{} crashes", n + 1));
                    self.power_off(n)?;
                }
            }
            3 => {
                let n = self.rng_nemesis.index(self.nodes());
                let p = &mut self.procs[n];
                let room = self.rng_nemesis.range(0, 64 << 10);
                p.fs.set_budget(p.fs.used() + room);
                let until = self.now + self.rng_nemesis.range(10_000, self.k.fault_duration_max_us);
                p.full_until = until;
                self.schedule(until, Ev::DiskRoom { n, until });
                self.note(format!("n{} disk full ({room} bytes left)", n + 1));
            }
            8 => self.drill_start(),
            7 => {
                let n = self.rng_nemesis.index(self.nodes());
                let until = self.now + self.rng_nemesis.range(10_000, self.k.fault_duration_max_us);
                self.procs[n].slow_until = until;
                self.stats.fault(FaultKind::SlowDisk);
                self.note(format!("n{} disk slow until {until}", n + 1));
            }
            5 => {
                // A failing disk for a while: many syncs fail (each one
                // fails the node stop). Often the node furthest behind: the
                // one most likely receiving a snapshot.
                let behind = (0..self.nodes())
                    .filter_map(|i| self.procs[i].life.as_ref().map(|l| (l.gc.core.commit_index(), i)))
                    .min()
                    .map(|(_, i)| i);
                let n = match behind {
                    Some(i) if self.rng_nemesis.percent(50) => i,
                    _ => self.rng_nemesis.index(self.nodes()),
                };
                self.failing_disk(n, 20_000, 300_000, self.k.fault_duration_max_us);
            }
            4 => {
                let n = self.rng_nemesis.index(self.nodes());
                let ms = self.rng_nemesis.range(100, 120_000) as i64;
                let step = if self.rng_nemesis.percent(50) { ms } else { -ms };
                self.procs[n].wall_offset_ms += step;
                self.nc.clock_step += 1;
                self.note(format!("n{} wall clock steps {step} ms", n + 1));
            }
            _ => {
                let leader = (0..self.nodes())
                    .find(|&i| self.procs[i].life.as_ref().is_some_and(|l| l.gc.core.role() == Role::Leader));
                if let Some(l) = leader {
                    let target = ringraft::core::NodeId(self.rng_nemesis.range(1, self.nodes() as u64 + 1));
                    let now = self.now;
                    let ok = self.procs[l].life.as_mut().is_some_and(|life| {
                        let t = life.time(now);
                        life.gc.core.transfer_leader(t, target).is_ok()
                    });
                    if ok {
                        self.stats.fault(FaultKind::Transfer);
                        self.note(format!("n{} transfers leadership to {target}", l + 1));
                        return self.on_node(l, Self::drive);
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts the ABA drill ([`Drill`]) with five voters all up.
    pub(super) fn drill_start(&mut self) {
        if self.nodes() < 5 || self.drill != Drill::Idle || self.procs.iter().any(|p| !p.up()) {
            return;
        }
        let leading = |p: &Proc| p.life.as_ref().is_some_and(|l| l.gc.core.role() == Role::Leader);
        let Some(l) = self.procs.iter().position(leading) else { return };
        let f = (l + 1 + self.rng_nemesis.index(self.nodes() - 1)) % self.nodes();
        let span = 40 * self.k.election_max_ms * 1000;
        self.procs[f].stall_until = self.now + span;
        // The writes after the stalled one are slow too: the rewrites the
        // drill brings are still in flight when the stalled write reports.
        self.procs[f].slow_until = self.now + 2 * span;
        self.net.split((1 << l) | (1 << f));
        self.drill = Drill::WaitX { l, f };
        self.schedule(self.now + span, Ev::DrillEnd);
        self.note(format!("drill: n{} stalls with leader n{}, cut off with it", f + 1, l + 1));
    }

    /// A node began leading: the drill's next move, if it waits for one.
    pub(super) fn drill_on_leader(&mut self, n: usize) {
        match self.drill {
            Drill::WaitX { l, f } if n != l && n != f => {
                self.net.split((1 << n) | (1 << f));
                self.drill = Drill::WaitL { l };
                self.note(format!("drill: n{} leads; cut off with n{} alone", n + 1, f + 1));
            }
            Drill::WaitL { l } if n == l => {
                self.net.heal();
                self.drill = Drill::Idle;
                self.note(format!("drill: n{} leads again; network healed", l + 1));
            }
            _ => {}
        }
    }

    /// Node `n`'s disk fails many of its syncs (`ppm_min..ppm_max` in a
    /// million) for up to `for_max_us`.
    pub(super) fn failing_disk(&mut self, n: usize, ppm_min: u64, ppm_max: u64, for_max_us: u64) {
        let ppm = self.rng_nemesis.range(ppm_min, ppm_max) as u32;
        self.procs[n].fs.set_fsync_fail_ppm(ppm);
        let until = self.now + self.rng_nemesis.range(1_000, for_max_us);
        self.procs[n].eio_until = until;
        self.schedule(until, Ev::DiskHealthy { n, until });
        self.note(format!("n{} disk fails {ppm} syncs in a million", n + 1));
    }
}
