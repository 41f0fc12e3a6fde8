//! The scenario commands: parse one line, run it on the cluster, return the
//! trace it printed. The command set is listed in tests/scenarios.rs.

use std::collections::BTreeSet;

use bytes::Bytes;
use ringraft::core::{ConfChange, Config, LogIndex, Message, NodeId, ReadId, ReadMode, Role};

use super::cluster::{Cluster, Options, GROUP};
use super::format;

/// Message kinds as the trace prints them (for filters and `hide`).
const KINDS: [&str; 13] = [
    "PreVote",
    "PreVoteResp",
    "Vote",
    "VoteResp",
    "App",
    "AppResp",
    "Heartbeat",
    "HeartbeatResp",
    "TimeoutNow",
    "Snap",
    "SnapResp",
    "ReadIndex",
    "ReadIndexResp",
];

/// The state a script's commands share.
#[derive(Default)]
pub struct Env {
    cluster: Option<Cluster>,
}

impl Env {
    /// Runs one command line; returns its trace (never empty: `ok`).
    pub fn run(&mut self, line: &str) -> Vec<String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let result = match words.split_first() {
            Some((&"cluster", args)) => self.cmd_cluster(args),
            Some((cmd, args)) => match self.cluster.as_mut() {
                Some(c) => run_on(c, cmd, args),
                None => Err("no cluster yet: start with `cluster voters=...`".into()),
            },
            None => Err("empty command".into()),
        };
        let mut out = self.cluster.as_mut().map(|c| std::mem::take(&mut c.out)).unwrap_or_default();
        if let Err(e) = result {
            out.push(format!("error: {e}"));
        }
        if out.is_empty() {
            out.push("ok".into());
        }
        out
    }

    fn cmd_cluster(&mut self, args: &[&str]) -> Result<(), String> {
        let mut cfg = Config::new(NodeId(1), GROUP);
        // Scenarios script the protocol itself, including changes a server
        // would refuse; `check_new_voters=true` turns the server's check on.
        cfg.check_new_voters = false;
        let (mut voters, mut learners, mut joining, mut chunk) = (Vec::new(), Vec::new(), Vec::new(), 8);
        for arg in args {
            let (k, v) = arg.split_once('=').ok_or_else(|| format!("expected key=value, got {arg:?}"))?;
            match k {
                "voters" => voters = node_list(v)?,
                "learners" => learners = node_list(v)?,
                "joining" => joining = node_list(v)?,
                "pre_vote" => cfg.pre_vote = parse(v)?,
                "check_quorum" => cfg.check_quorum = parse(v)?,
                "check_new_voters" => cfg.check_new_voters = parse(v)?,
                "append_entries_max" => cfg.append_entries_max = parse(v)?,
                "append_bytes_max" => cfg.append_bytes_max = parse(v)?,
                "inflight_msgs_max" => cfg.inflight_msgs_max = parse(v)?,
                "trailing" => cfg.snapshot_trailing_entries = parse(v)?,
                "heartbeat" => cfg.heartbeat_interval_ms = parse(v)?,
                "drift" => cfg.lease_drift_ms = parse(v)?,
                "chunk" => chunk = parse(v)?,
                "election" => {
                    let (a, b) = v.split_once("..").ok_or("election=MIN..MAX")?;
                    (cfg.election_timeout_min_ms, cfg.election_timeout_max_ms) = (parse(a)?, parse(b)?);
                }
                _ => return Err(format!("unknown cluster option {k:?}")),
            }
        }
        cfg.validate()?;
        let mut c = Cluster::new(Options { cfg, chunk }, &voters, &learners, &joining);
        let deadlines: Vec<String> = c
            .nodes
            .iter()
            .map(|(id, n)| format!("{id}@{}", format::time(n.core.as_ref().expect("fresh").next_deadline())))
            .collect();
        c.print(format!("clocks at 1000ms; election deadlines {}", deadlines.join(" ")));
        self.cluster = Some(c);
        Ok(())
    }
}

fn run_on(c: &mut Cluster, cmd: &str, args: &[&str]) -> Result<(), String> {
    match cmd {
        "campaign" => c.campaign(one_node(c, args)?),
        "tick" => {
            let [n, ms] = args else { return Err("tick <node> <ms>".into()) };
            let id = node(c, n)?;
            c.tick_node(id, parse(ms)?);
        }
        "advance" | "run" => {
            let [ms] = args else { return Err(format!("{cmd} <ms>")) };
            c.advance(parse(ms)?, cmd == "run");
        }
        "stabilize" => c.stabilize(),
        "propose" => cmd_propose(c, args)?,
        "deliver" | "drop" => cmd_deliver(c, cmd == "deliver", args)?,
        "net" => {
            let lines: Vec<String> = c.net.iter().map(format::message).collect();
            c.out.extend(lines);
        }
        "persist" => cmd_persist(c, args)?,
        "apply" => {
            for id in live_nodes(c, args)? {
                c.apply(id);
            }
        }
        "partition" => cmd_partition(c, args)?,
        "heal" => c.partition.clear(),
        "read" => cmd_read(c, args)?,
        "transfer" => {
            let [from, to] = args else { return Err("transfer <leader> <target>".into()) };
            let (from, to) = (live(c, from)?, node(c, to)?);
            let now = c.nodes[&from].clock;
            if let Err(e) = c.core(from).expect("live").transfer_leader(now, to) {
                c.print(format!("{from} transfer refused: {e}"));
            }
            c.process_ready(from);
        }
        "conf" => cmd_conf(c, args)?,
        "snapshot" => cmd_snapshot(c, args)?,
        "crash" => {
            let id = live(c, args.first().ok_or("crash <node>")?)?;
            c.crash(id);
        }
        "restart" => {
            let id = one_node(c, args)?;
            if c.nodes[&id].core.is_some() {
                return Err(format!("{id} is running"));
            }
            c.restart(id);
        }
        "status" => {
            for id in nodes(c, args)? {
                status(c, id);
            }
        }
        "log" => {
            for id in nodes(c, args)? {
                log(c, id);
            }
        }
        "hide" | "show" => cmd_hide(c, cmd == "hide", args)?,
        _ => return Err(format!("unknown command {cmd:?}")),
    }
    Ok(())
}

fn cmd_propose(c: &mut Cluster, args: &[&str]) -> Result<(), String> {
    let (n, data) = args.split_first().ok_or("propose <node> <data>...")?;
    let id = live(c, n)?;
    let core = c.core(id).expect("live");
    let mut refused = Vec::new();
    for d in data {
        if let Err(e) = core.propose(Bytes::copy_from_slice(d.as_bytes())) {
            refused.push(format!("{id} propose {d:?} refused: {e}"));
        }
    }
    c.out.extend(refused);
    c.process_ready(id);
    Ok(())
}

/// `deliver|drop [FROM->TO] [KIND] [COUNT | #N]`; `*` matches any node,
/// `#N` picks only the N-th matching message (oldest first).
fn cmd_deliver(c: &mut Cluster, deliver: bool, args: &[&str]) -> Result<(), String> {
    let (mut from, mut to, mut kind, mut count, mut nth) = (None, None, None, usize::MAX, None);
    for a in args {
        if let Some(n) = a.strip_prefix('#') {
            nth = Some(parse::<usize>(n)?);
        } else if let Some((f, t)) = a.split_once("->") {
            from = if f == "*" { None } else { Some(NodeId(parse(f)?)) };
            to = if t == "*" { None } else { Some(NodeId(parse(t)?)) };
        } else if a.chars().all(|ch| ch.is_ascii_digit()) {
            count = parse(a)?;
        } else if KINDS.contains(a) {
            kind = Some(*a);
        } else {
            return Err(format!("expected FROM->TO, a message kind or a count, got {a:?}"));
        }
    }
    let matches = |m: &Message| {
        from.is_none_or(|f| m.from == f) && to.is_none_or(|t| m.to == t) && kind.is_none_or(|k| m.body.kind() == k)
    };
    let mut picked = Vec::new();
    let mut rest = Vec::new();
    let mut seen = 0;
    for m in std::mem::take(&mut c.net) {
        let matched = matches(&m);
        seen += usize::from(matched);
        let hit = matched && nth.is_none_or(|n| n == seen);
        if hit && picked.len() < count {
            picked.push(m);
        } else {
            rest.push(m);
        }
    }
    c.net = rest;
    if picked.is_empty() {
        c.print("no such message in flight".into());
    } else if deliver {
        c.deliver(picked);
    } else {
        for m in picked {
            c.print(format!("{} (dropped)", format::message(&m)));
        }
    }
    Ok(())
}

fn cmd_persist(c: &mut Cluster, args: &[&str]) -> Result<(), String> {
    let mut count = None;
    let mut ids = Vec::new();
    for a in args {
        match a.strip_prefix("writes=") {
            Some(n) => count = Some(parse(n)?),
            None => ids.push(*a),
        }
    }
    for id in live_nodes(c, &ids)? {
        c.persist(id, count);
    }
    Ok(())
}

/// `partition 1 | 2,3`: nodes not named form one more group.
fn cmd_partition(c: &mut Cluster, args: &[&str]) -> Result<(), String> {
    let mut groups: Vec<BTreeSet<NodeId>> = Vec::new();
    for g in args.join(" ").split('|') {
        groups.push(node_list(&g.replace(' ', ","))?.into_iter().collect());
    }
    let named: BTreeSet<NodeId> = groups.iter().flatten().copied().collect();
    let rest: BTreeSet<NodeId> = c.nodes.keys().filter(|n| !named.contains(n)).copied().collect();
    if !rest.is_empty() {
        groups.push(rest);
    }
    let shown: Vec<String> = groups.iter().map(format::ids).collect();
    c.print(format!("partition {}", shown.join(" | ")));
    c.partition = groups;
    Ok(())
}

/// `read <node> <id>... [lease]`: all reads go in before one ready.
fn cmd_read(c: &mut Cluster, args: &[&str]) -> Result<(), String> {
    let (n, rest) = args.split_first().ok_or("read <node> <id>... [lease]")?;
    let id = live(c, n)?;
    let mode = if rest.last() == Some(&"lease") { ReadMode::Lease } else { ReadMode::ReadIndex };
    let now = c.nodes[&id].clock;
    for r in rest.iter().filter(|r| **r != "lease") {
        let rid = ReadId(parse(r)?);
        c.core(id).expect("live").read_index(now, rid, mode);
    }
    c.process_ready(id);
    Ok(())
}

fn cmd_conf(c: &mut Cluster, args: &[&str]) -> Result<(), String> {
    let usage = "conf <node> add-voter N | add-learner N | remove N | change-peers voters=.. learners=..";
    let [n, op, rest @ ..] = args else { return Err(usage.into()) };
    let id = live(c, n)?;
    let change = match (*op, rest) {
        ("add-voter", [m]) => ConfChange::AddVoter(NodeId(parse(m)?)),
        ("add-learner", [m]) => ConfChange::AddLearner(NodeId(parse(m)?)),
        ("remove", [m]) => ConfChange::RemoveNode(NodeId(parse(m)?)),
        ("change-peers", kvs) => {
            let (mut voters, mut learners) = (BTreeSet::new(), BTreeSet::new());
            for kv in kvs {
                match kv.split_once('=') {
                    Some(("voters", v)) => voters = node_list(v)?.into_iter().collect(),
                    Some(("learners", v)) => learners = node_list(v)?.into_iter().collect(),
                    _ => return Err(usage.into()),
                }
            }
            ConfChange::ChangePeers { voters, learners }
        }
        _ => return Err(usage.into()),
    };
    if let Err(e) = c.core(id).expect("live").propose_conf_change(change) {
        c.print(format!("{id} conf change refused: {e}"));
    }
    c.process_ready(id);
    Ok(())
}

/// `snapshot <node> <index>`: the state machine's state at `index` is
/// stored durably, then the core is told (and compacts its log).
fn cmd_snapshot(c: &mut Cluster, args: &[&str]) -> Result<(), String> {
    let [n, index] = args else { return Err("snapshot <node> <index>".into()) };
    let id = live(c, n)?;
    let index = LogIndex(parse(index)?);
    let bytes = c.nodes[&id].sm.snapshot_bytes(index);
    match c.core(id).expect("live").on_snapshot_created(index) {
        Ok(meta) => {
            let line = format!(
                "{id} snapshot {}/{} conf {} data {:?}",
                meta.last_index,
                meta.last_term,
                format::membership(&meta.membership),
                String::from_utf8_lossy(&bytes)
            );
            c.print(line);
            c.nodes.get_mut(&id).expect("live").disk.snapshot = (meta, bytes);
        }
        Err(e) => c.print(format!("{id} snapshot refused: {e}")),
    }
    c.process_ready(id);
    Ok(())
}

fn cmd_hide(c: &mut Cluster, hide: bool, args: &[&str]) -> Result<(), String> {
    for a in args {
        if !hide && *a == "all" {
            c.hidden.clear();
        } else if !KINDS.contains(a) {
            return Err(format!("unknown message kind {a:?}"));
        } else if hide {
            c.hidden.insert(a.to_string());
        } else {
            c.hidden.remove(*a);
        }
    }
    Ok(())
}

/// `1 leader t2 vote=1 @1623ms commit=5 persisted=5 applied=3 log=1..5 conf 1,2,3`
/// and, on a leader, one line per peer.
fn status(c: &mut Cluster, id: NodeId) {
    let node = &c.nodes[&id];
    let Some(core) = node.core.as_ref() else {
        c.print(format!("{id} down"));
        return;
    };
    let hs = core.hard_state();
    let mut line = format!("{id} {} t{} vote={}", format::role(core.role()), hs.term, hs.vote);
    if core.role() != Role::Leader && core.leader().is_some() {
        line.push_str(&format!(" leader={}", core.leader()));
    }
    let log = if core.last_index() < core.first_index() {
        "empty".to_string()
    } else {
        format!("{}..{}", core.first_index(), core.last_index())
    };
    line.push_str(&format!(
        " @{} commit={} persisted={} applied={} log={log}",
        format::time(node.clock),
        core.commit_index(),
        core.persisted_index(),
        core.applied_index(),
    ));
    let snap = core.snapshot_meta();
    if snap.last_index.0 > 0 {
        line.push_str(&format!(" snap={}/{}", snap.last_index, snap.last_term));
    }
    line.push_str(&format!(" conf {}", format::membership(core.membership())));
    let mut lines = vec![line];
    if core.role() == Role::Leader {
        let lease = if core.lease_valid() { "valid" } else { "none" };
        let transfer = core.transfer_target().map(|t| format!(" transfer-to={t}")).unwrap_or_default();
        lines.push(format!("  lease {lease}{transfer}"));
        for peer in core.membership().members() {
            if let Some(p) = core.progress(peer) {
                lines.push(format!("  {peer}: {}", format::progress(p)));
            }
        }
    } else {
        lines.push(format!("  election timer @{}", format::time(core.next_deadline())));
    }
    let sm: Vec<&str> = node.sm.data.iter().map(|(_, s)| s.as_str()).collect();
    lines.push(format!("  state machine applied={} [{}]", node.sm.applied, sm.join(",")));
    c.out.extend(lines);
}

fn log(c: &mut Cluster, id: NodeId) {
    let Some(core) = c.nodes[&id].core.as_ref() else {
        c.print(format!("{id} down"));
        return;
    };
    let entries: Vec<String> = (core.first_index().0..=core.last_index().0)
        .filter_map(|i| core.entry(LogIndex(i)))
        .map(format::entry)
        .collect();
    let from = core.first_index().prev();
    let head = if from.0 > 0 {
        format!(" (after {}/{})", from, core.term_at(from).unwrap_or_default())
    } else {
        String::new()
    };
    let body = if entries.is_empty() { "empty".to_string() } else { entries.join(", ") };
    c.print(format!("{id} log{head}: {body}"));
}

fn parse<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("cannot parse {s:?}"))
}

/// `1,2,3` (empty for none).
fn node_list(s: &str) -> Result<Vec<NodeId>, String> {
    s.split(',').filter(|x| !x.is_empty()).map(|x| parse(x).map(NodeId)).collect()
}

fn node(c: &Cluster, s: &str) -> Result<NodeId, String> {
    let id = NodeId(parse(s)?);
    if c.nodes.contains_key(&id) {
        Ok(id)
    } else {
        Err(format!("no node {id}"))
    }
}

fn live(c: &Cluster, s: &str) -> Result<NodeId, String> {
    let id = node(c, s)?;
    if c.nodes[&id].core.is_some() {
        Ok(id)
    } else {
        Err(format!("{id} is down"))
    }
}

fn one_node(c: &Cluster, args: &[&str]) -> Result<NodeId, String> {
    match args {
        [n] => node(c, n),
        _ => Err("expected one node id".into()),
    }
}

/// Like `nodes`, but every one must run; nothing means every live node.
fn live_nodes(c: &Cluster, args: &[&str]) -> Result<Vec<NodeId>, String> {
    if args.is_empty() {
        return Ok(c.live_ids());
    }
    nodes(c, args)?.into_iter().map(|id| live(c, &id.to_string())).collect()
}

/// Node ids given as `1 2`, `1,2` or nothing (every node).
fn nodes(c: &Cluster, args: &[&str]) -> Result<Vec<NodeId>, String> {
    if args.is_empty() {
        return Ok(c.nodes.keys().copied().collect());
    }
    let mut out = Vec::new();
    for a in args {
        for id in node_list(a)? {
            out.push(node(c, &id.to_string())?);
        }
    }
    Ok(out)
}
