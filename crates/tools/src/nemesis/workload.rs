//! The clients of a nemesis run: each a thread with its own blocking
//! [`Client`] and exactly-once session, appending unique records
//! (`c<client>-<n>`) to random streams and now and then reading a stream
//! back linearizably from a little before the highest offset it has seen
//! acknowledged. Every call is recorded: its invocation before it is sent,
//! its outcome (`ok`, `fail` when the server refused it before applying,
//! `unknown` otherwise) after.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::faults::Rng;
use super::record::Recorder;
use ringraft_client::{Client, ClientConfig, ClientError, ReadConsistency};
use ringraft_service::READ_RECORDS_MAX;

/// How the clients behave.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Client threads.
    pub clients: usize,
    /// Stream names.
    pub streams: Vec<String>,
    /// Operations per second per client at most (they pause between calls).
    pub rate_per_client: u32,
    /// Out of 100 operations, how many are reads.
    pub read_percent: u64,
    /// The deadline of one call, retries included.
    pub request_timeout: Duration,
}

impl Default for Workload {
    fn default() -> Workload {
        Workload {
            clients: 4,
            streams: (0..3).map(|i| format!("s{i}")).collect(),
            rate_per_client: 250,
            read_percent: 15,
            request_timeout: Duration::from_secs(2),
        }
    }
}

/// Whether an error means the operation certainly did not happen.
fn refused(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::UnknownStream(_)
            | ClientError::StreamExists(_)
            | ClientError::TooLarge
            | ClientError::Unauthorized
            | ClientError::WrongCluster
            | ClientError::BadRequest(_)
    )
}

/// The running clients.
pub struct Clients {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Clients {
    /// Starts `w.clients` threads against `servers`, recording into `rec`.
    /// The streams must exist.
    ///
    /// # Errors
    /// A thread cannot be spawned (those already running are stopped).
    pub fn start(
        w: &Workload,
        servers: &[String],
        cluster_id: u64,
        rec: &Arc<Recorder>,
        seed: u64,
    ) -> std::io::Result<Clients> {
        let stop = Arc::new(AtomicBool::new(false));
        // The highest acknowledged offset per stream, shared: reads start
        // a little before it.
        let seen: Arc<Vec<AtomicU64>> = Arc::new(w.streams.iter().map(|_| AtomicU64::new(0)).collect());
        let mut clients = Clients { stop: Arc::clone(&stop), threads: Vec::new() };
        for i in 0..w.clients {
            let mut cfg = ClientConfig::new(servers.to_vec(), cluster_id);
            cfg.request_timeout = w.request_timeout;
            cfg.connect_timeout = Duration::from_millis(500);
            let (w, rec, stop, seen) = (w.clone(), Arc::clone(rec), Arc::clone(&stop), Arc::clone(&seen));
            let rng = Rng::new(seed ^ (i as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let t = std::thread::Builder::new()
                .name(format!("nemesis-client-{i}"))
                .spawn(move || client_loop(i, &cfg, &w, &rec, &stop, &seen, rng));
            match t {
                Ok(t) => clients.threads.push(t),
                Err(e) => {
                    clients.stop();
                    return Err(e);
                }
            }
        }
        Ok(clients)
    }

    /// Stops the clients (each finishes its call in flight) and joins them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn client_loop(
    me: usize,
    cfg: &ClientConfig,
    w: &Workload,
    rec: &Recorder,
    stop: &AtomicBool,
    seen: &[AtomicU64],
    mut rng: Rng,
) {
    let gap = Duration::from_micros(1_000_000 / u64::from(w.rate_per_client.max(1)));
    let mut client: Option<Client> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        let started = Instant::now();
        let c = match client.as_mut() {
            Some(c) => c,
            None => match Client::connect(cfg.clone()) {
                Ok(c) => client.insert(c),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            },
        };
        let s = rng.range(0, w.streams.len() as u64) as usize;
        let stream = &w.streams[s];
        if rng.chance(w.read_percent, 100) {
            let from = seen[s].load(Ordering::Acquire).saturating_sub(rng.range(0, 32));
            let id = rec.invoke_read(stream, from);
            match c.read(stream, from, READ_RECORDS_MAX as u32, u32::MAX, ReadConsistency::Linearizable) {
                // A full batch may not reach the end: it proves nothing.
                Ok(r) if r.records.len() >= READ_RECORDS_MAX => rec.unknown("read", id, "batch full"),
                Ok(r) => rec.ok_read(id, r.next_offset, r.records.iter().map(|b| &b[..])),
                Err(e) if refused(&e) => rec.fail("read", id, &e.to_string()),
                Err(e) => rec.unknown("read", id, &e.to_string()),
            }
        } else {
            let value = format!("c{me}-{n}");
            n += 1;
            let id = rec.invoke_append(stream, &value);
            match c.append(stream, vec![Bytes::from(value.into_bytes())]) {
                Ok(ack) => {
                    rec.ok_append(id, ack.first_offset);
                    seen[s].fetch_max(ack.first_offset, Ordering::AcqRel);
                }
                Err(e) if refused(&e) => rec.fail("append", id, &e.to_string()),
                Err(e) => {
                    rec.unknown("append", id, &e.to_string());
                    if matches!(e, ClientError::SessionExpired) {
                        c.reset_session();
                    }
                }
            }
        }
        if let Some(rest) = gap.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}
