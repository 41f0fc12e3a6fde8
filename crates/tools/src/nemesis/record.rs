//! Writing a history while a run goes on: every client thread and the
//! nemesis share one [`Recorder`], which stamps each line with the
//! microseconds since the run began and appends it to the history file
//! (format: [`super::history`]). An `invoke` line is written before its
//! request is sent and its answer after the reply came back, so the file's
//! order is consistent with real time.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

/// The shared history writer of one run.
pub struct Recorder {
    start: Instant,
    next_id: AtomicU64,
    out: Mutex<Sink>,
}

struct Sink {
    w: BufWriter<File>,
    /// The first write error; later lines are dropped and `finish` reports it.
    err: Option<io::Error>,
}

/// Replaces what cannot sit in a one-word history field (separators,
/// whitespace, non-ASCII) with `?`, so a corrupted record shows as a
/// mismatch instead of breaking the line.
pub fn field(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| if b.is_ascii_graphic() && b != b',' { b as char } else { '?' }).collect()
}

impl Recorder {
    /// Creates the history file and writes its header, its `seed` line and
    /// its `options` line (`options`: the run's other flags, as the replay
    /// command takes them).
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(path: &Path, seed: u64, options: &str) -> io::Result<Recorder> {
        let w = BufWriter::with_capacity(1 << 20, File::create(path)?);
        let r = Recorder { start: Instant::now(), next_id: AtomicU64::new(1), out: Mutex::new(Sink { w, err: None }) };
        r.raw("# ringraft nemesis history v1");
        r.raw(&format!("seed {seed}"));
        r.raw(&format!("options {options}"));
        Ok(r)
    }

    /// Microseconds since the run began.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn raw(&self, line: &str) {
        self.out.lock().put(line);
    }

    /// Writes `kind T rest`, stamped now.
    fn stamped(&self, kind: &str, rest: &str) {
        // Stamped under the lock so the file's times never go backwards.
        let mut s = self.out.lock();
        s.put(&format!("{kind} {} {rest}", self.now()));
    }

    /// Records the invocation of an append of `value` to `stream`; returns
    /// the op id.
    pub fn invoke_append(&self, stream: &str, value: &str) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.stamped("invoke", &format!("append {id} {stream} {value}"));
        id
    }

    /// Records the invocation of a read of `stream` from `from`; returns the
    /// op id.
    pub fn invoke_read(&self, stream: &str, from: u64) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.stamped("invoke", &format!("read {id} {stream} from={from}"));
        id
    }

    /// Append `id` was acknowledged at `offset`.
    pub fn ok_append(&self, id: u64, offset: u64) {
        self.stamped("ok", &format!("append {id} offset={offset}"));
    }

    /// Read `id` returned `records`, ending at `next`.
    pub fn ok_read<'a>(&self, id: u64, next: u64, records: impl Iterator<Item = &'a [u8]>) {
        let rest = format!("read {id} next={next} {}", joined(records));
        self.stamped("ok", rest.trim_end());
    }

    /// Op `id` was refused: it did not happen.
    pub fn fail(&self, op: &str, id: u64, why: &str) {
        self.stamped("fail", &format!("{op} {id} {}", one_line(why)));
    }

    /// Op `id` got no answer: it may or may not have happened.
    pub fn unknown(&self, op: &str, id: u64, why: &str) {
        self.stamped("unknown", &format!("{op} {id} {}", one_line(why)));
    }

    /// The nemesis injected a fault of `kind`.
    pub fn fault(&self, kind: &str, args: &str) {
        self.stamped("fault", &format!("{kind} {args}"));
    }

    /// The runner itself saw something wrong (a crash, lost durable data,
    /// no convergence): an anomaly the checker counts.
    pub fn anomaly(&self, kind: &str, detail: &str) {
        self.stamped("anomaly", &format!("{kind} {}", one_line(detail)));
    }

    /// A comment line (what the nemesis did to heal, what it noticed).
    pub fn note(&self, text: &str) {
        let mut s = self.out.lock();
        s.put(&format!("# {} {}", self.now(), one_line(text)));
    }

    /// A replica's whole stream after heal.
    pub fn final_stream<'a>(&self, node: u64, stream: &str, records: impl Iterator<Item = &'a [u8]>) {
        let line = format!("final {node} {stream} {}", joined(records));
        self.raw(line.trim_end());
    }

    /// Flushes the file.
    ///
    /// # Errors
    /// The first write error of the run, or the flush's.
    pub fn finish(&self) -> io::Result<()> {
        let mut s = self.out.lock();
        if let Some(e) = s.err.take() {
            return Err(e);
        }
        s.w.flush()?;
        s.w.get_ref().sync_data()
    }
}

impl Sink {
    fn put(&mut self, line: &str) {
        if self.err.is_none() {
            if let Err(e) = self.w.write_all(line.as_bytes()).and_then(|()| self.w.write_all(b"\n")) {
                self.err = Some(e);
            }
        }
    }
}

/// The records as one comma-separated field list.
fn joined<'a>(records: impl Iterator<Item = &'a [u8]>) -> String {
    let mut out = String::new();
    for (i, r) in records.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&field(r));
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
