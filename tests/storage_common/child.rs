//! Running `ringraft-logtool stress` as a child, killing it when asked, and
//! parsing what it announced and acknowledged.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::payload::{derived_payload, payload_crc};
use super::support::{LOGTOOL, SEGMENT_BYTES};

/// One record of a batch, in write order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rec {
    Entry { group: u64, index: u64, term: u64, seed: u64, max_bytes: u64 },
    Purge { group: u64, index: u64 },
    Reset { group: u64, index: u64, term: u64 },
}

/// One batch the child announced.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub id: u64,
    pub recs: Vec<Rec>,
    /// The `write` line was seen: `LogEngine::write` may have run.
    pub started: bool,
    /// An acknowledgement line was seen: `write` returned `Ok`.
    pub acked: bool,
    /// The child reported that `write` failed.
    pub error: Option<String>,
    /// `ok` lines seen (each checked against `recs`).
    pub oks: usize,
    /// `truncated` lines seen.
    pub truncations: usize,
}

/// The parsed stdout of one `stress` run.
#[derive(Debug, Default)]
pub struct Transcript {
    pub seed: u64,
    pub max_bytes: u64,
    /// `(group, offset, last)` of the log as the child opened it.
    pub start_state: Vec<(u64, u64, u64)>,
    /// The child finished opening the log (`start_state` is complete).
    pub opened: bool,
    pub batches: Vec<Batch>,
    pub done: bool,
    /// Lines that are not part of the protocol (a shim announcing itself).
    pub foreign: Vec<String>,
    /// Acknowledgement lines that came after the first foreign line.
    pub acks_after_foreign: usize,
}

impl Transcript {
    /// Parses one complete line.
    ///
    /// # Panics
    /// On a line that breaks the protocol, or an `ok` line whose group,
    /// index, term or payload CRC disagree with the announced batch.
    pub fn feed(&mut self, line: &str) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> u64 {
            w.get(i).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad stress line: {line:?}"))
        };
        let is_ack = matches!(w.first().copied(), Some("ok" | "truncated" | "purged" | "reset" | "acked"));
        if is_ack && !self.foreign.is_empty() {
            self.acks_after_foreign += 1;
        }
        match w.as_slice() {
            ["start", "seed", _, "groups", _, "batches", _, "max-batch", _, "max-bytes", _, ..] => {
                self.seed = num(2);
                self.max_bytes = num(10);
            }
            ["state", ..] => self.start_state.push((num(1), num(2), num(3))),
            ["opened", _] => {
                self.opened = true;
                assert_eq!(num(1) as usize, self.start_state.len(), "state lines missing before {line:?}");
            }
            ["batch", _] => self.batches.push(Batch { id: num(1), ..Batch::default() }),
            ["op", "append", ..] => {
                let (group, first, count, term) = (num(2), num(3), num(4), num(5));
                let (seed, max_bytes) = (self.seed, self.max_bytes);
                let b = self.current(line);
                b.recs.extend((first..first + count).map(|index| Rec::Entry { group, index, term, seed, max_bytes }));
            }
            ["op", "purge", ..] => {
                let rec = Rec::Purge { group: num(2), index: num(3) };
                self.current(line).recs.push(rec);
            }
            ["op", "reset", ..] => {
                let rec = Rec::Reset { group: num(2), index: num(3), term: num(4) };
                self.current(line).recs.push(rec);
            }
            ["write", _] => self.current(line).started = true,
            ["ok", _, _, _, crc] => {
                let crc = u32::from_str_radix(crc, 16).unwrap_or_else(|_| panic!("bad crc in {line:?}"));
                let (g, i, t) = (num(1), num(2), num(3));
                let b = self.current(line);
                assert!(b.started, "ack before write: {line:?}");
                b.acked = true;
                let nth = b.oks;
                b.oks += 1;
                let rec = b.recs.iter().filter(|r| matches!(r, Rec::Entry { .. })).nth(nth).copied();
                let Some(Rec::Entry { group, index, term, seed, max_bytes }) = rec else {
                    panic!("ok line {line:?} has no announced entry")
                };
                assert_eq!((g, i, t), (group, index, term), "ok line {line:?} out of order");
                let expected = payload_crc(&derived_payload(seed, group, index, term, max_bytes));
                assert_eq!(crc, expected, "logtool and test disagree on the payload of {line:?}");
            }
            ["truncated" | "purged" | "reset", ..] | ["acked", _] => {
                let b = self.current(line);
                assert!(b.started, "ack before write: {line:?}");
                b.acked = true;
                b.truncations += usize::from(w[0] == "truncated");
            }
            ["error", _, ..] => self.current(line).error = Some(line.to_string()),
            ["done", ..] => self.done = true,
            _ => self.foreign.push(line.to_string()),
        }
    }

    fn current(&mut self, line: &str) -> &mut Batch {
        self.batches.last_mut().unwrap_or_else(|| panic!("{line:?} before any batch"))
    }

    /// The records of every acknowledged batch, in order.
    ///
    /// # Panics
    /// When an acknowledged batch follows one that was started and not
    /// acknowledged (the child must stop at a failed write).
    pub fn acked_recs(&self) -> Vec<Rec> {
        let mut out = Vec::new();
        let mut open = false;
        for b in &self.batches {
            if b.acked {
                assert!(!open, "batch {} acknowledged after an unacknowledged one", b.id);
                out.extend_from_slice(&b.recs);
            } else if b.started {
                open = true;
            }
        }
        out
    }

    /// The batch whose write may have been under way when the child died.
    pub fn inflight(&self) -> Option<&Batch> {
        self.batches.iter().rev().find(|b| b.started && !b.acked)
    }

    pub fn acked_batches(&self) -> usize {
        self.batches.iter().filter(|b| b.acked).count()
    }

    pub fn acked_entries(&self) -> usize {
        self.batches.iter().filter(|b| b.acked).map(|b| b.oks).sum()
    }

    /// Acknowledged truncating appends, purges and resets.
    pub fn acked_markers(&self) -> (usize, usize, usize) {
        let mut n = (0, 0, 0);
        for b in self.batches.iter().filter(|b| b.acked) {
            n.0 += b.truncations;
            for r in &b.recs {
                match r {
                    Rec::Entry { .. } => {}
                    Rec::Purge { .. } => n.1 += 1,
                    Rec::Reset { .. } => n.2 += 1,
                }
            }
        }
        n
    }
}

// --- running the child --------------------------------------------------------

/// Arguments of a `stress` run.
#[derive(Clone, Debug)]
pub struct StressArgs {
    pub seed: u64,
    pub groups: u64,
    pub batches: u64,
    pub max_batch: u64,
    pub max_bytes: u64,
}

impl StressArgs {
    pub fn new(seed: u64, batches: u64) -> StressArgs {
        StressArgs { seed, groups: 4, batches, max_batch: 16, max_bytes: 512 }
    }
}

/// When the parent kills the child.
#[derive(Clone, Copy, Debug)]
pub enum KillPlan {
    /// Let it run to its end.
    Never,
    /// `SIGKILL` once the child has announced `writes` writes, `delay_us`
    /// later (the delay picks the moment inside or after that write; it is
    /// not a wait for anything). `writes: 0` kills after the `start` line,
    /// while the child is opening (recovering) the log.
    AfterWrites { writes: u64, delay_us: u64 },
}

/// What one child run did.
pub struct Run {
    pub transcript: Transcript,
    pub status: ExitStatus,
    pub stderr: String,
    /// The child died of our `SIGKILL` (or of its own, from a shim).
    pub killed: bool,
}

/// Runs `ringraft-logtool stress` on `dir`, with `env` added.
pub fn run_stress(dir: &Path, args: &StressArgs, env: &[(&str, &str)], plan: KillPlan) -> Run {
    let mut cmd = Command::new(LOGTOOL);
    cmd.arg("stress").arg("--dir").arg(dir);
    for (k, v) in [
        ("--seed", args.seed),
        ("--groups", args.groups),
        ("--batches", args.batches),
        ("--max-batch", args.max_batch),
        ("--max-bytes", args.max_bytes),
        ("--segment-bytes", SEGMENT_BYTES),
    ] {
        cmd.arg(k).arg(v.to_string());
    }
    cmd.envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {LOGTOOL}: {e}"));
    let stderr = drain_in_thread(&mut child);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut transcript = Transcript::default();
    let mut writes = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = out.read_until(b'\n', &mut line).unwrap();
        if n == 0 || line.last() != Some(&b'\n') {
            break; // EOF; a line cut short by the kill is not a statement.
        }
        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        transcript.feed(&text);
        let at = if text.starts_with("write ") {
            writes += 1;
            Some(writes)
        } else {
            text.starts_with("start ").then_some(0)
        };
        if let (KillPlan::AfterWrites { writes: w, delay_us }, Some(at)) = (plan, at) {
            if at == w {
                if delay_us > 0 {
                    std::thread::sleep(Duration::from_micros(delay_us));
                }
                let _ = child.kill();
            }
        }
    }
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap();
    Run { transcript, killed: status.signal() == Some(9), status, stderr }
}

fn drain_in_thread(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    })
}
