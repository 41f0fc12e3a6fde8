//! The history format: what every client of a nemesis run saw, one event
//! per line, so a run can be checked again later (`ringraft-nemesis
//! --check FILE`) and a failure quoted line by line.
//!
//! ```text
//! # ringraft nemesis history v1
//! seed 42
//! fault 1200 kill node=2
//! invoke 1503 append 7 s0 c3-17
//! ok 1877 append 7 offset=12
//! invoke 1900 append 8 s0 c1-4
//! unknown 9100 append 8
//! invoke 2001 read 9 s0 from=10
//! ok 2377 read 9 next=13 c2-9,c3-17,c0-2
//! final 1 s0 c0-0,c1-0,...
//! ```
//!
//! Every line is `kind time ...`, time in microseconds since the run began
//! (one clock: the runner's). Kinds:
//! * `seed S`: the run's seed (for the replay command).
//! * `options FLAGS...`: the other flags that shape the run (`--nodes`,
//!   `--seconds`, `--clients`, `--faults`, ...), as the replay command
//!   takes them. Histories written before it existed have none.
//! * `fault T KIND ARGS...`: a fault the nemesis injected (counted per kind).
//! * `invoke T append ID STREAM VALUE`: an append of the record `VALUE`
//!   (ASCII, unique per run; the record's bytes are exactly it).
//! * `invoke T read ID STREAM from=K`: a linearizable read from offset `K`
//!   to the stream's end.
//! * `ok T append ID offset=O`: acknowledged at offset `O`.
//! * `ok T read ID next=N V1,V2,...`: the records at `K..N` (N is the end
//!   the read saw; the list may be empty).
//! * `fail T OP ID [reason]`: the server refused before applying: it did
//!   not happen.
//! * `unknown T OP ID [reason]`: no answer (timeout, lost connection): it
//!   may or may not have happened.
//! * `final NODE STREAM V1,V2,...`: a replica's whole stream after the
//!   cluster healed, read from that node.
//! * `anomaly T KIND DETAIL...`: something the runner itself saw go wrong:
//!   `crash` (a server exited that no fault should have stopped),
//!   `durability` (a node restarted from its power-cut disk lacks entries
//!   it had acknowledged as durable) or `liveness` (the cluster did not
//!   heal: no leader, no convergence, a membership change that never
//!   completed).
//!
//! Blank lines and lines starting with `#` are comments.

use std::collections::BTreeMap;

/// One appended or read operation, paired from its lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The op's id (unique in the history).
    pub id: u64,
    /// The line of its `invoke`.
    pub line: usize,
    /// The stream.
    pub stream: String,
    /// When it was invoked.
    pub invoke: u64,
    /// How it ended.
    pub end: End,
    /// What it was.
    pub kind: Kind,
}

/// An operation's kind and arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An append of one record.
    Append {
        /// The record (unique per run).
        value: String,
    },
    /// A read from `from` to the end.
    Read {
        /// The first offset asked for.
        from: u64,
    },
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Answered, at this time and line.
    Ok {
        /// When.
        at: u64,
        /// Its line.
        line: usize,
        /// What it returned.
        result: Returned,
    },
    /// Refused: it did not happen.
    Fail,
    /// No answer: it may have happened.
    Unknown,
    /// The history ends before an answer (counted as unknown).
    Open,
}

/// What an answered operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Returned {
    /// An append's offset.
    Offset(u64),
    /// A read's end and records.
    Records {
        /// The end the read saw.
        next: u64,
        /// The records from `from` to `next`.
        values: Vec<String>,
    },
}

/// A whole history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// The run's seed, if recorded.
    pub seed: Option<u64>,
    /// Operations in invoke order.
    pub ops: Vec<Op>,
    /// The run's other options, as the replay command takes them (`None`:
    /// a history from before they were recorded).
    pub options: Option<String>,
    /// Faults injected, counted per kind.
    pub faults: BTreeMap<String, u64>,
    /// `(node, stream) -> (line, records)` after heal.
    pub finals: BTreeMap<(u64, String), (usize, Vec<String>)>,
    /// What the runner reported: `(line, kind, detail)`.
    pub runner: Vec<(usize, &'static str, String)>,
}

/// The kinds of `anomaly` line (module docs).
pub const RUNNER_ANOMALIES: [&str; 3] = ["crash", "durability", "liveness"];

/// A line that does not follow the format.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub why: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

impl std::error::Error for ParseError {}

fn num(word: Option<&str>, what: &str) -> Result<u64, String> {
    let w = word.ok_or_else(|| format!("missing {what}"))?;
    w.parse().map_err(|_| format!("{what} `{w}` is not a number"))
}

fn keyed(word: Option<&str>, key: &str) -> Result<u64, String> {
    let w = word.ok_or_else(|| format!("missing {key}=..."))?;
    let v = w
        .strip_prefix(key)
        .and_then(|r| r.strip_prefix('='))
        .ok_or_else(|| format!("expected {key}=..., got `{w}`"))?;
    v.parse().map_err(|_| format!("{key} `{v}` is not a number"))
}

fn values(word: Option<&str>) -> Vec<String> {
    match word {
        None | Some("") => Vec::new(),
        Some(w) => w.split(',').map(str::to_owned).collect(),
    }
}

impl History {
    /// Parses a history.
    ///
    /// # Errors
    /// The first line that does not follow the format (module docs): an
    /// unknown kind, a missing or non-numeric field, an answer to an op
    /// that was never invoked, a second answer, a duplicate op id.
    pub fn parse(text: &str) -> Result<History, ParseError> {
        let mut h = History::default();
        let mut by_id: BTreeMap<u64, usize> = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            h.parse_line(l, line, &mut by_id).map_err(|why| ParseError { line, why })?;
        }
        Ok(h)
    }

    fn parse_line(&mut self, l: &str, line: usize, by_id: &mut BTreeMap<u64, usize>) -> Result<(), String> {
        let mut w = l.split_whitespace();
        match w.next().unwrap_or_default() {
            "seed" => self.seed = Some(num(w.next(), "seed")?),
            "options" => self.options = Some(w.collect::<Vec<_>>().join(" ")),
            "fault" => {
                num(w.next(), "time")?;
                let kind = w.next().ok_or("missing fault kind")?;
                *self.faults.entry(kind.to_owned()).or_default() += 1;
            }
            "anomaly" => {
                num(w.next(), "time")?;
                let kind = w.next().ok_or("missing anomaly kind")?;
                let kind = RUNNER_ANOMALIES
                    .iter()
                    .find(|k| **k == kind)
                    .ok_or_else(|| format!("unknown anomaly kind `{kind}`"))?;
                self.runner.push((line, kind, w.collect::<Vec<_>>().join(" ")));
            }
            "final" => {
                let node = num(w.next(), "node")?;
                let stream = w.next().ok_or("missing stream")?.to_owned();
                self.finals.insert((node, stream), (line, values(w.next())));
            }
            "invoke" => {
                let invoke = num(w.next(), "time")?;
                let op = w.next().ok_or("missing op")?;
                let id = num(w.next(), "op id")?;
                let stream = w.next().ok_or("missing stream")?.to_owned();
                let kind = match op {
                    "append" => Kind::Append { value: w.next().ok_or("missing value")?.to_owned() },
                    "read" => Kind::Read { from: keyed(w.next(), "from")? },
                    other => return Err(format!("unknown op `{other}`")),
                };
                if by_id.insert(id, self.ops.len()).is_some() {
                    return Err(format!("op id {id} invoked twice"));
                }
                self.ops.push(Op { id, line, stream, invoke, end: End::Open, kind });
            }
            end @ ("ok" | "fail" | "unknown") => {
                let at = num(w.next(), "time")?;
                let op = w.next().ok_or("missing op")?;
                let id = num(w.next(), "op id")?;
                let &i = by_id.get(&id).ok_or_else(|| format!("{end} for op {id}, which was never invoked"))?;
                let o = &mut self.ops[i];
                if o.end != End::Open {
                    return Err(format!("op {id} ended twice"));
                }
                let is_read = matches!(o.kind, Kind::Read { .. });
                if (op == "read") != is_read {
                    return Err(format!("op {id} was invoked as the other kind"));
                }
                o.end = match end {
                    "fail" => End::Fail,
                    "unknown" => End::Unknown,
                    _ if is_read => {
                        let next = keyed(w.next(), "next")?;
                        End::Ok { at, line, result: Returned::Records { next, values: values(w.next()) } }
                    }
                    _ => End::Ok { at, line, result: Returned::Offset(keyed(w.next(), "offset")?) },
                };
            }
            other => return Err(format!("unknown line kind `{other}`")),
        }
        Ok(())
    }
}
