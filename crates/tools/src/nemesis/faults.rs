//! The faults a nemesis injects and how each is healed: inject, hold for a
//! seeded while (a third of the time with a second, lighter fault laid on
//! top), heal last-in first-out, pause, next. The seed picks the kinds, the
//! victims and the timings, so `--seed S` replays the same schedule (the
//! cluster's own timing still varies, and so do the victims that depend on
//! who leads).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::record::Recorder;
use ringraft_client::AdminRequest;

/// Every fault kind, as named in `fault` lines and `faults_<kind>=`.
pub const KINDS: [&str; 15] = [
    "kill",
    "pause",
    "partition",
    "oneway",
    "bridge",
    "delay",
    "drop",
    "cut",
    "transfer",
    "membership",
    "snapshot",
    "disk-full",
    "disk-full-kill",
    "fsync-fail",
    "power-loss",
];

/// The kinds that may be laid over another fault while it holds.
const OVERLAYS: [&str; 10] =
    ["kill", "pause", "partition", "oneway", "bridge", "delay", "drop", "cut", "transfer", "snapshot"];

/// Exit status of a server whose `fdatasync` failed (fail-stop).
pub const FAIL_STOP_EXIT: i32 = 86;

/// A seeded generator (SplitMix64): the schedule's only source of chance.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.range(0, den) < num
    }

    /// A uniformly chosen element (None when empty).
    pub fn pick<T: Copy>(&mut self, of: &[T]) -> Option<T> {
        (!of.is_empty()).then(|| of[self.range(0, of.len() as u64) as usize])
    }

    /// Shuffles `v` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.range(0, i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// What is in force until the heal.
enum Active {
    /// Nothing to undo (the fault was instantaneous).
    Nothing,
    /// A killed node to restart.
    Killed(u64),
    /// A stopped node to continue.
    Paused(u64),
    /// Network faults: heal every proxy.
    Net,
    /// A removed voter to add back (learner, catch up, promote).
    Removed(u64),
    /// A full disk to drain (the node may have stopped).
    Full(u64),
    /// A failing fsync to clear; the node should have stopped.
    FsyncFailing(u64),
}

/// Drives faults against a cluster and records them.
pub struct Nemesis<'a> {
    c: &'a mut Cluster,
    rec: &'a Recorder,
    rng: Rng,
    /// Kinds to draw from.
    kinds: Vec<&'static str>,
    /// Nodes whose next exit is expected, with the status they should exit with.
    expect_exit: Vec<(u64, i32)>,
    /// When each unexpected exit happened, to stop restarting a node that
    /// cannot start.
    crashes: Vec<(u64, Instant)>,
    /// Nodes that cannot start any more (already reported): left down.
    given_up: Vec<u64>,
    /// Nodes whose `fdatasync` fails now: a kill laid over that fault is
    /// not healed by a restart (the node would only stop again, exit 86);
    /// the fsync fault's heal restarts it.
    fsync_failing: Vec<u64>,
    /// Set to stop injecting at once.
    interrupt: &'a AtomicBool,
}

/// Unexpected exits of one node within [`CRASH_WINDOW`] after which it is
/// left down.
const CRASH_LOOP: usize = 3;
const CRASH_WINDOW: Duration = Duration::from_secs(30);

impl<'a> Nemesis<'a> {
    /// A nemesis over `c` drawing from `kinds` (those the cluster cannot
    /// support are dropped) with `seed`; it stops early once `interrupt`
    /// is set.
    pub fn new(
        c: &'a mut Cluster,
        rec: &'a Recorder,
        seed: u64,
        kinds: &[&'static str],
        interrupt: &'a AtomicBool,
    ) -> Nemesis<'a> {
        let kinds = kinds.iter().copied().filter(|k| !c.missing.iter().any(|(m, _)| m == k)).collect();
        Nemesis {
            c,
            rec,
            rng: Rng::new(seed),
            kinds,
            expect_exit: Vec::new(),
            crashes: Vec::new(),
            given_up: Vec::new(),
            fsync_failing: Vec::new(),
            interrupt,
        }
    }

    /// The cluster.
    pub fn cluster(&mut self) -> &mut Cluster {
        self.c
    }

    /// Nodes left down for good (each already reported as an anomaly).
    pub fn given_up(&self) -> &[u64] {
        &self.given_up
    }

    /// Injects faults until `until`: each held 1–4 s, then healed, then a
    /// pause of 0.5–2 s. Everything is healed when it returns.
    pub fn run_until(&mut self, until: Instant) {
        while Instant::now() + Duration::from_secs(1) < until && !self.interrupted() {
            let pause = Duration::from_millis(self.rng.range(500, 2000));
            self.sleep_until(Instant::now() + pause, until);
            let Some(kind) = self.rng.pick(&self.kinds) else { return };
            if self.interrupted() {
                return;
            }
            let mut active = vec![self.inject(kind)];
            // A third of the time a second, lighter fault on top.
            let second: Vec<&'static str> = self.kinds.iter().copied().filter(|k| OVERLAYS.contains(k)).collect();
            if self.rng.chance(1, 3) {
                let hold = Duration::from_millis(self.rng.range(200, 1500));
                self.sleep_until(Instant::now() + hold, until + Duration::from_secs(4));
                if let Some(k) = self.rng.pick(&second) {
                    active.push(self.inject(k));
                }
            }
            let hold = Duration::from_millis(self.rng.range(1000, 4000));
            self.sleep_until(Instant::now() + hold, until + Duration::from_secs(4));
            // Last in, first out: a membership change is restored after
            // the kill on top of it is healed.
            while let Some(a) = active.pop() {
                self.heal(a);
            }
            self.check_exits();
        }
    }

    fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::Acquire)
    }

    /// Sleeps until `t` (never past `cap`, not at all once interrupted),
    /// restarting crashed servers on the way.
    fn sleep_until(&mut self, t: Instant, cap: Instant) {
        let t = t.min(cap);
        while Instant::now() < t && !self.interrupted() {
            std::thread::sleep((t - Instant::now()).min(Duration::from_millis(100)));
            self.check_exits();
        }
    }

    /// Records and restarts every server that exited on its own; an exit
    /// no fault explains is a `crash` anomaly.
    pub fn check_exits(&mut self) {
        for (id, status) in self.c.reap() {
            let code = status.code().unwrap_or(-1);
            if let Some(i) = self.expect_exit.iter().position(|&(n, want)| n == id && want == code) {
                self.expect_exit.remove(i);
                self.rec.note(&format!("node {id} stopped as expected ({status})"));
                // Its fault's heal restarts it.
                continue;
            }
            self.rec.anomaly(
                "crash",
                &format!("node {id} exited on its own ({status}); see {}", self.c.log_path(id).display()),
            );
            let now = Instant::now();
            self.crashes.retain(|&(_, t)| now.duration_since(t) < CRASH_WINDOW);
            self.crashes.push((id, now));
            if self.crashes.iter().filter(|&&(n, _)| n == id).count() >= CRASH_LOOP {
                self.rec.note(&format!("node {id} keeps exiting: left down"));
                self.given_up.push(id);
            } else if let Err(e) = self.c.restart(id) {
                self.rec.note(&format!("cannot restart node {id}: {e}"));
            }
        }
    }

    /// The leader half the time (when one is known), else a random node.
    fn victim(&mut self) -> (u64, bool) {
        if self.rng.chance(1, 2) {
            if let Some((l, _)) = self.c.leader() {
                return (l, true);
            }
        }
        (self.rng.range(1, self.c.n + 1), false)
    }

    fn inject(&mut self, kind: &'static str) -> Active {
        let n = self.c.n;
        match kind {
            "kill" => {
                let (v, leader) = self.victim();
                self.rec.fault(kind, &format!("node={v} leader={leader}"));
                match self.c.kill(v) {
                    Ok(()) => Active::Killed(v),
                    Err(e) => self.note_nothing(&format!("kill node {v}: {e}")),
                }
            }
            "pause" => {
                let (v, leader) = self.victim();
                self.rec.fault(kind, &format!("node={v} leader={leader}"));
                match self.c.signal(v, libc::SIGSTOP) {
                    Ok(()) => Active::Paused(v),
                    Err(e) => self.note_nothing(&e.to_string()),
                }
            }
            "partition" => {
                // A minority (1 of 3, 1 or 2 of 5) cut off from the rest.
                let mut ids: Vec<u64> = self.c.ids().collect();
                self.rng.shuffle(&mut ids);
                let k = self.rng.range(1, (n - 1) / 2 + 1) as usize;
                let (minority, majority) = ids.split_at(k);
                self.rec.fault(kind, &format!("minority={}", list(minority)));
                self.c.split(minority, majority);
                Active::Net
            }
            "oneway" => {
                // One node hears nobody (or nobody hears it).
                let (v, leader) = self.victim();
                let inbound = self.rng.chance(1, 2);
                self.rec.fault(kind, &format!("node={v} leader={leader} lost={}", if inbound { "in" } else { "out" }));
                for o in self.c.ids().filter(|&o| o != v) {
                    if inbound {
                        self.c.block(o, v, true);
                    } else {
                        self.c.block(v, o, true);
                    }
                }
                Active::Net
            }
            "bridge" => {
                // Two sides that cannot talk, one node that talks to both.
                let mut ids: Vec<u64> = self.c.ids().collect();
                self.rng.shuffle(&mut ids);
                let bridge = ids[0];
                let rest = &ids[1..];
                let half = rest.len() / 2;
                let (left, right) = rest.split_at(half);
                self.rec.fault(kind, &format!("bridge={bridge} left={} right={}", list(left), list(right)));
                self.c.split(left, right);
                Active::Net
            }
            "delay" => {
                let (v, leader) = self.victim();
                let ms = self.rng.range(5, 60);
                self.rec.fault(kind, &format!("node={v} leader={leader} ms={ms}"));
                for o in self.c.ids().filter(|&o| o != v) {
                    self.c.delay(v, o, Duration::from_millis(ms));
                }
                Active::Net
            }
            "drop" => {
                // Whole frames vanish from streams that stay up.
                let (v, leader) = self.victim();
                let per_mille = self.rng.range(100, 400);
                self.rec.fault(kind, &format!("node={v} leader={leader} per_mille={per_mille}"));
                for o in self.c.ids().filter(|&o| o != v) {
                    self.c.drop_frames(v, o, per_mille);
                }
                Active::Net
            }
            "cut" => {
                self.rec.fault(kind, "links=all");
                self.c.cut_all();
                Active::Nothing
            }
            "transfer" => {
                let leader = self.c.leader().map(|(l, _)| l);
                let others: Vec<u64> = self.c.ids().filter(|&i| Some(i) != leader).collect();
                let target = self.rng.pick(&others).unwrap_or(0);
                self.rec.fault(kind, &format!("from={} to={target}", leader.unwrap_or(0)));
                if let Err(e) = self.c.admin(AdminRequest::TransferLeader { target }, Duration::from_secs(3)) {
                    self.rec.note(&format!("transfer to {target} refused: {e}"));
                }
                Active::Nothing
            }
            "membership" => {
                let (v, leader) = self.victim();
                self.rec.fault(kind, &format!("remove={v} leader={leader}"));
                match self.c.admin(AdminRequest::RemoveVoter { node: v }, Duration::from_secs(5)) {
                    Ok(_) => {}
                    Err(e) => self.rec.note(&format!("removing voter {v}: {e} (restored at heal either way)")),
                }
                Active::Removed(v)
            }
            "snapshot" => {
                self.rec.fault(kind, "at=leader");
                if let Err(e) = self.c.admin(AdminRequest::Snapshot, Duration::from_secs(5)) {
                    self.rec.note(&format!("snapshot refused: {e}"));
                }
                Active::Nothing
            }
            "disk-full" => self.disk_full(),
            "disk-full-kill" => self.disk_full_kill(),
            "fsync-fail" => {
                let (v, leader) = self.victim();
                self.rec.fault(kind, &format!("node={v} leader={leader}"));
                if self.c.fail_fsync(v, true) {
                    self.expect_exit.push((v, FAIL_STOP_EXIT));
                    self.fsync_failing.push(v);
                    Active::FsyncFailing(v)
                } else {
                    self.note_nothing("the fsync shim is missing")
                }
            }
            "power-loss" => {
                self.power_loss();
                Active::Nothing
            }
            other => self.note_nothing(&format!("unknown fault kind {other}")),
        }
    }

    fn note_nothing(&self, why: &str) -> Active {
        self.rec.note(why);
        Active::Nothing
    }

    fn disk_full(&mut self) -> Active {
        let v = super::cluster::TMPFS_NODE;
        self.rec.fault("disk-full", &format!("node={v}"));
        match self.c.disk(v).fill() {
            Ok(bytes) => {
                self.rec.note(&format!("node {v}: ballast of {bytes} bytes fills its disk"));
                Active::Full(v)
            }
            Err(e) => {
                let _ = self.c.disk(v).drain();
                self.note_nothing(&format!("filling node {v}'s disk failed: {e}"))
            }
        }
    }

    /// Fills the tmpfs node's disk, lets it run into the full disk for a
    /// moment (log appends, a checkpoint), SIGKILLs it while full and starts
    /// it again on the still full disk, where it must come up and say `disk
    /// full` rather than exit; the heal frees the space. (Issue 16: a node
    /// killed on a full disk used to be lost for good.)
    fn disk_full_kill(&mut self) -> Active {
        let v = super::cluster::TMPFS_NODE;
        if self.given_up.contains(&v) {
            return self.note_nothing(&format!("disk-full-kill skipped: node {v} is down for good"));
        }
        self.rec.fault("disk-full-kill", &format!("node={v}"));
        let bytes = match self.c.disk(v).fill() {
            Ok(b) => b,
            Err(e) => {
                let _ = self.c.disk(v).drain();
                return self.note_nothing(&format!("filling node {v}'s disk failed: {e}"));
            }
        };
        let ms = self.rng.range(200, 1500);
        self.rec.note(&format!("node {v}: ballast of {bytes} bytes fills its disk; SIGKILL in {ms} ms"));
        std::thread::sleep(Duration::from_millis(ms));
        if self.c.running(v) {
            if let Err(e) = self.c.kill(v) {
                self.rec.note(&format!("kill node {v}: {e}"));
            }
        }
        self.restart(v);
        // Up on a full disk: it answers status and says so (or, if it got
        // its storage open in the little space left, serves).
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.c.running(v) {
            if let Some(h) = self.c.status(v).and_then(|s| s.health) {
                self.rec.note(&format!(
                    "node {v} restarted on its full disk: disk_full={} starting={}",
                    h.disk_full, h.starting
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.check_exits();
        Active::Full(v)
    }

    /// Power cut on the image node: stop it, copy its disk, kill it, put the
    /// copy in place, start it cut off from its peers and compare its log
    /// with what the leader knew it had made durable.
    fn power_loss(&mut self) {
        let v = super::cluster::IMAGE_NODE;
        if self.given_up.contains(&v) {
            self.rec.note(&format!("power-loss skipped: node {v} is down for good"));
            return;
        }
        // Only a follower's acknowledgements are visible: move the
        // leadership away first.
        // A step that cannot move it measures nothing: it fails (and says
        // why) instead of cutting the leader's power as if it had.
        if self.c.leader().is_some_and(|(l, _)| l == v) {
            if let Err(e) = self.c.admin(AdminRequest::TransferLeader { target: 0 }, Duration::from_secs(2)) {
                self.rec.note(&format!("power-loss step failed: moving the leadership off node {v} was refused: {e}"));
                return;
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && self.c.leader().is_none_or(|(l, _)| l == v) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.c.leader().is_none_or(|(l, _)| l == v) {
                self.rec.note(&format!("power-loss step failed: node {v} still leads 3 s after a leader transfer"));
                return;
            }
        }
        // Stopped first, then asked: everything v ever acknowledged has
        // reached its leader (after a moment for answers in flight), and v
        // acknowledges nothing more. All of it must be in the copy.
        if self.c.running(v) && self.c.signal(v, libc::SIGSTOP).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
        let matched = self
            .c
            .leader_besides(v)
            .and_then(|(_, s)| s.groups.first().and_then(|g| g.peers.iter().find(|p| p.node == v).map(|p| p.matched)));
        self.rec.fault("power-loss", &format!("node={v} matched={}", matched.map_or("?".into(), |m| m.to_string())));
        let copy = self.c.disk(v).power_cut_copy();
        let _ = self.c.kill(v);
        let copy = match copy {
            Ok(c) => c,
            Err(e) => {
                self.rec.note(&format!("copying node {v}'s disk failed: {e}; restarting it as it was"));
                let _ = self.c.restart(v);
                return;
            }
        };
        match self.c.disk(v).restore_copy(&copy) {
            Ok(true) => self.rec.note(&format!("node {v}: the copied image needed e2fsck")),
            Ok(false) => {}
            Err(e) => {
                self.rec.anomaly("liveness", &format!("node {v}: cannot mount its power-cut disk: {e}"));
                return;
            }
        }
        // Alone, so that nothing it learns after the restart hides a loss.
        let others: Vec<u64> = self.c.ids().filter(|&o| o != v).collect();
        self.c.split(&[v], &others);
        if let Err(e) = self.c.restart(v) {
            self.rec.anomaly("liveness", &format!("node {v} does not start from its power-cut disk: {e}"));
        } else {
            let deadline = Instant::now() + Duration::from_secs(20);
            let last = loop {
                // A node still opening its storage answers with no groups
                // (health: starting): its log is not known yet.
                if let Some(g) = self.c.status(v).and_then(|s| s.groups.into_iter().next()) {
                    break Ok(g.last_index);
                }
                if let Some((_, status)) = self.c.reap().into_iter().find(|&(n, _)| n == v) {
                    break Err(format!("exited ({status}): {}", self.c.last_log_line(v)));
                }
                if Instant::now() > deadline {
                    break Err("no answer within 20 s".into());
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            match (last, matched) {
                (Ok(l), Some(m)) if l < m => self.rec.anomaly(
                    "durability",
                    &format!("node {v} restarted from its power-cut disk with log up to {l}, but had acknowledged {m}"),
                ),
                (Ok(l), _) => self.rec.note(&format!("node {v} recovered from the power cut with log up to {l}")),
                (Err(why), _) => {
                    self.rec.anomaly("durability", &format!("node {v} does not start from its power-cut disk: {why}"));
                    self.given_up.push(v);
                }
            }
        }
        self.c.heal_net();
    }

    fn heal(&mut self, a: Active) {
        match a {
            Active::Nothing => {}
            Active::Killed(v) if self.fsync_failing.contains(&v) => {
                self.rec.note(&format!("node {v} stays down until its fsync fault heals"));
            }
            Active::Killed(v) => self.restart(v),
            Active::Paused(v) => {
                if let Err(e) = self.c.signal(v, libc::SIGCONT) {
                    self.rec.note(&format!("continuing node {v}: {e}"));
                }
            }
            Active::Net => self.c.heal_net(),
            Active::Removed(v) => self.restore_voter(v),
            Active::Full(v) => {
                if let Err(e) = self.c.disk(v).drain() {
                    self.rec.note(&format!("draining node {v}'s disk: {e}"));
                }
                self.check_exits();
                if !self.c.running(v) {
                    self.restart(v);
                }
            }
            Active::FsyncFailing(v) => {
                // Give a quiet node time to try a sync and stop.
                let deadline = Instant::now() + Duration::from_secs(3);
                while self.c.running(v) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                    self.check_exits();
                }
                self.c.fail_fsync(v, false);
                self.fsync_failing.retain(|&n| n != v);
                self.check_exits();
                // Matched or not (a kill laid over it took the node first),
                // the expectation ends with the fault.
                self.expect_exit.retain(|&(n, _)| n != v);
                if self.c.running(v) {
                    self.rec.note(&format!("node {v} never synced while its fsync failed"));
                } else {
                    self.restart(v);
                }
            }
        }
    }

    fn restart(&mut self, v: u64) {
        // Two faults on one node (a kill on a kill) restart it once.
        if self.given_up.contains(&v) || self.c.running(v) {
            return;
        }
        if let Err(e) = self.c.restart(v) {
            self.rec.anomaly("liveness", &format!("node {v} cannot be restarted: {e}"));
        }
    }

    /// Makes `v` a voter again: as a learner first, promoted once it has
    /// caught up with the leader's commit index.
    pub fn restore_voter(&mut self, v: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            let Some((_, s)) = self.c.leader() else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let Some(g) = s.groups.first() else { break };
            let req = if g.voters.contains(&v) {
                return;
            } else if g.learners.contains(&v) {
                let matched = g.peers.iter().find(|p| p.node == v).map_or(0, |p| p.matched);
                if matched + 64 < g.commit {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                AdminRequest::AddVoter { node: v, addr: String::new() }
            } else {
                AdminRequest::AddLearner { node: v, addr: String::new() }
            };
            if let Err(e) = self.c.admin(req, Duration::from_secs(3)) {
                last = e.to_string();
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        self.rec.anomaly("liveness", &format!("node {v} could not be made a voter again within 30 s ({last})"));
    }

    /// Heals whatever may still be wrong at the end: the network, stopped
    /// or dead servers, full disks, failing fsyncs, missing voters.
    pub fn heal_all(&mut self) {
        self.c.heal_net();
        self.fsync_failing.clear();
        for id in self.c.ids().collect::<Vec<_>>() {
            let _ = self.c.signal(id, libc::SIGCONT);
            self.c.fail_fsync(id, false);
            let _ = self.c.disk(id).drain();
        }
        self.check_exits();
        for id in self.c.ids().collect::<Vec<_>>() {
            if !self.c.running(id) {
                self.restart(id);
            }
        }
        for id in self.c.ids().filter(|id| !self.given_up.contains(id)).collect::<Vec<_>>() {
            self.restore_voter(id);
        }
    }
}

fn list(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}
