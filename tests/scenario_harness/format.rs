//! How core values print in scenario traces: one short, stable line per
//! message, entry list, write or status, in the notation `index/term`.

use std::collections::BTreeSet;

use ringraft::core::{
    Entry, LogOp, Membership, Message, MessageBody, NodeId, Payload, Progress, ReplState, Role, Time,
};

/// `1,2,3` (or `-` for the empty set).
pub fn ids(set: &BTreeSet<NodeId>) -> String {
    if set.is_empty() {
        return "-".into();
    }
    set.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")
}

/// `1,2,3`, `1,2,4 & 1,2,3` (joint: incoming & outgoing), `... learners=4`.
pub fn membership(m: &Membership) -> String {
    let mut out = ids(&m.voters);
    if m.is_joint() {
        out.push_str(&format!(" & {}", ids(&m.voters_outgoing)));
    }
    if !m.learners.is_empty() {
        out.push_str(&format!(" learners={}", ids(&m.learners)));
    }
    out
}

/// `4/2 noop`, `5/2 "x"`, `6/2 conf 1,2,3,4`.
pub fn entry(e: &Entry) -> String {
    let what = match &e.payload {
        Payload::Noop => "noop".to_string(),
        Payload::Normal(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Payload::Config(m) => format!("conf {}", membership(m)),
    };
    format!("{}/{} {}", e.index, e.term, what)
}

/// Up to three entries in full; longer lists as runs of one term,
/// `[4..5/1, 6..9/2]` (entries 4 to 5 of term 1, then 6 to 9 of term 2).
pub fn entries(es: &[Entry]) -> String {
    if es.len() <= 3 {
        return format!("[{}]", es.iter().map(entry).collect::<Vec<_>>().join(", "));
    }
    let mut runs: Vec<(u64, u64, u64)> = Vec::new();
    for e in es {
        match runs.last_mut() {
            Some((_, last, term)) if *term == e.term.0 && *last + 1 == e.index.0 => *last = e.index.0,
            _ => runs.push((e.index.0, e.index.0, e.term.0)),
        }
    }
    let runs: Vec<String> =
        runs.iter().map(|(a, b, t)| if a == b { format!("{a}/{t}") } else { format!("{a}..{b}/{t}") }).collect();
    format!("[{}]", runs.join(", "))
}

/// `1->2 App t2 prev=3/1 ents=[4/2 noop] commit=3`.
pub fn message(m: &Message) -> String {
    format!("{}->{} {}", m.from, m.to, body(m))
}

fn body(m: &Message) -> String {
    let t = m.term;
    match &m.body {
        MessageBody::PreVote { last_log_term, last_log_index } => {
            format!("PreVote t{t} last={last_log_index}/{last_log_term}")
        }
        MessageBody::PreVoteResponse { granted } => format!("PreVoteResp t{t} {}", grant(*granted)),
        MessageBody::Vote { last_log_term, last_log_index, transfer } => {
            let tr = if *transfer { " transfer" } else { "" };
            format!("Vote t{t} last={last_log_index}/{last_log_term}{tr}")
        }
        MessageBody::VoteResponse { granted } => format!("VoteResp t{t} {}", grant(*granted)),
        MessageBody::AppendEntries { prev_log_index, prev_log_term, entries: es, commit } => {
            let ents = if es.is_empty() { String::new() } else { format!(" ents={}", entries(es)) };
            format!("App t{t} prev={prev_log_index}/{prev_log_term}{ents} commit={commit}")
        }
        MessageBody::AppendEntriesResponse { match_index, reject: None } => format!("AppResp t{t} match={match_index}"),
        MessageBody::AppendEntriesResponse { match_index, reject: Some(h) } => format!(
            "AppResp t{t} reject prev={} hint={}/{} last={match_index}",
            h.rejected_index, h.conflict_index, h.conflict_term
        ),
        MessageBody::Heartbeat { commit, read_round } => format!("Heartbeat t{t} commit={commit} round={read_round}"),
        MessageBody::HeartbeatResponse { read_round } => format!("HeartbeatResp t{t} round={read_round}"),
        MessageBody::TimeoutNow => format!("TimeoutNow t{t}"),
        MessageBody::InstallSnapshot { meta, offset, data, done, .. } => format!(
            "Snap t{t} snap={}/{} off={offset} len={}{}",
            meta.last_index,
            meta.last_term,
            data.len(),
            if *done { " done" } else { "" }
        ),
        MessageBody::InstallSnapshotResponse { last_index, next_offset, done } => {
            format!("SnapResp t{t} snap={last_index} next={next_offset}{}", if *done { " done" } else { "" })
        }
        MessageBody::ReadIndexRequest { ctx } => format!("ReadIndex t{t} ctx={ctx}"),
        MessageBody::ReadIndexResponse { ctx, index: Some(i) } => format!("ReadIndexResp t{t} ctx={ctx} index={i}"),
        MessageBody::ReadIndexResponse { ctx, index: None } => format!("ReadIndexResp t{t} ctx={ctx} failed"),
    }
}

fn grant(granted: bool) -> &'static str {
    if granted {
        "granted"
    } else {
        "rejected"
    }
}

/// `append [4/2 noop]`, `purge ..=5`, `reset to 10/2`.
pub fn log_op(op: &LogOp) -> String {
    match op {
        LogOp::Append(es) => format!("append {}", entries(es)),
        LogOp::Purge(i) => format!("purge ..={i}"),
        LogOp::Reset(meta) => format!("reset to {}/{}", meta.last_index, meta.last_term),
    }
}

/// `follower`, `pre-candidate`, `candidate`, `leader`.
pub fn role(r: Role) -> &'static str {
    match r {
        Role::Follower => "follower",
        Role::PreCandidate => "pre-candidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

/// `1523ms` (with microseconds only when there are some).
pub fn time(t: Time) -> String {
    if t == Time::NEVER {
        return "never".into();
    }
    let us = t.as_micros();
    if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{}.{:03}ms", us / 1000, us % 1000)
    }
}

/// `replicate match=5 next=6 inflight=[5]`, `probe match=0 next=3 sent`.
pub fn progress(p: &Progress) -> String {
    let state = match p.state {
        ReplState::Probe => {
            format!("probe match={} next={}{}", p.matched, p.next, if p.probe_sent { " sent" } else { "" })
        }
        ReplState::Replicate => {
            let inflight: Vec<String> = p.inflight.iter().map(|i| i.to_string()).collect();
            format!("replicate match={} next={} inflight=[{}]", p.matched, p.next, inflight.join(","))
        }
        ReplState::Snapshot { index, offset, .. } => {
            format!("snapshot {index} offset={offset} match={}", p.matched)
        }
    };
    if p.recent_active {
        state + " active"
    } else {
        state
    }
}
