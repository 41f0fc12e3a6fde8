//! The physical references every figure is printed beside, measured at the
//! start of the run on this machine: `fdatasync` latency in the data dir's
//! filesystem, the loopback TCP round trip, and the raw `write+fdatasync`
//! throughput ceiling. Owns its probe files (removed when done) and the echo
//! thread of the round-trip probe (joined before returning).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::BenchError;

/// Appends of 4 KiB, each followed by `fdatasync`, in the latency probe.
const FSYNC_SAMPLES: usize = 200;
/// Bytes per append of the latency probe.
const FSYNC_BYTES: usize = 4096;
/// 64-byte ping-pongs in the round-trip probe.
const RTT_SAMPLES: usize = 1000;
/// Bytes per ping and per pong.
const RTT_BYTES: usize = 64;
/// Bytes written per `fdatasync` in the throughput probe.
const CEILING_BATCH_BYTES: usize = 1 << 20;
/// How long the throughput probe writes.
const CEILING_TIME: Duration = Duration::from_secs(1);
/// The throughput probe's file is truncated back to empty past this size,
/// so the probe never needs more than this much free disk.
const CEILING_FILE_MAX: u64 = 256 << 20;
/// Limit on each socket operation of the round-trip probe.
const RTT_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// This machine's physical limits, as measured at the start of the run.
#[derive(Clone, Debug)]
pub struct Ideal {
    /// p50 of 4 KiB append + `fdatasync`, µs.
    pub fsync_p50_us: f64,
    /// p99 of the same, µs.
    pub fsync_p99_us: f64,
    /// p50 of a 64-byte ping-pong over 127.0.0.1, µs.
    pub rtt_p50_us: f64,
    /// p99 of the same, µs.
    pub rtt_p99_us: f64,
    /// Raw `write+fdatasync` throughput of `record_bytes`-byte records
    /// gathered into 1 MiB writes, one `fdatasync` each, bytes/s.
    pub ceiling_bytes_s: f64,
    /// The record size the ceiling was measured with.
    pub record_bytes: usize,
}

impl Ideal {
    /// Runs the three probes; the disk ones in a scratch file in `dir`
    /// (created if needed; the file is removed afterwards).
    ///
    /// # Errors
    /// `Setup` when the scratch file or the loopback sockets fail.
    pub fn measure(dir: &Path, record_bytes: usize) -> Result<Ideal, BenchError> {
        std::fs::create_dir_all(dir).map_err(|e| setup(&format!("creating {}", dir.display()), e))?;
        let scratch = dir.join(format!("fsync-probe-{}", std::process::id()));
        let disk = probe_fsync(&scratch).and_then(|l| Ok((l, probe_ceiling(&scratch, record_bytes)?)));
        let _ = std::fs::remove_file(&scratch);
        let (mut fsync, ceiling_bytes_s) = disk.map_err(|e| setup(&format!("probe file {}", scratch.display()), e))?;
        let mut rtt = probe_rtt().map_err(|e| setup("loopback round-trip probe", e))?;
        Ok(Ideal {
            fsync_p50_us: quantile_us(&mut fsync, 0.5),
            fsync_p99_us: quantile_us(&mut fsync, 0.99),
            rtt_p50_us: quantile_us(&mut rtt, 0.5),
            rtt_p99_us: quantile_us(&mut rtt, 0.99),
            ceiling_bytes_s,
            record_bytes,
        })
    }

    /// The ideal latency of one replicated append from one client: 2 round
    /// trips (client↔leader, leader↔followers) + 1 fsync (leader and
    /// followers persist in parallel), µs.
    pub fn append_us(&self) -> f64 {
        2.0 * self.rtt_p50_us + self.fsync_p50_us
    }

    /// The throughput ceiling of a 3-replica cluster sharing this one disk:
    /// a third of the raw ceiling, MB/s.
    pub fn cluster_ceiling_mb_s(&self) -> f64 {
        self.ceiling_bytes_s / 3.0 / 1e6
    }
}

impl fmt::Display for Ideal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ideal: fdatasync (4 KiB append) p50 {:.0} µs p99 {:.0} µs; loopback RTT (64 B) p50 {:.0} µs p99 {:.0} µs",
            self.fsync_p50_us, self.fsync_p99_us, self.rtt_p50_us, self.rtt_p99_us
        )?;
        writeln!(f, "ideal append latency = 2 RTT + 1 fsync = {:.0} µs", self.append_us())?;
        write!(
            f,
            "raw write+fdatasync ceiling ({}-byte records, 1 MiB per fdatasync): {:.0} MB/s; shared by 3 replicas: {:.0} MB/s",
            self.record_bytes,
            self.ceiling_bytes_s / 1e6,
            self.cluster_ceiling_mb_s()
        )
    }
}

fn setup(what: &str, e: std::io::Error) -> BenchError {
    BenchError::Setup(format!("{what}: {e}"))
}

/// The `q` quantile of `samples`, in µs (0 when there are none).
fn quantile_us(samples: &mut [Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let i = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[i.min(samples.len() - 1)].as_secs_f64() * 1e6
}

fn create(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new().create(true).truncate(true).write(true).open(path)
}

/// [`FSYNC_SAMPLES`] × (append 4 KiB, `fdatasync`), each timed.
fn probe_fsync(path: &PathBuf) -> std::io::Result<Vec<Duration>> {
    let mut f = create(path)?;
    let block = vec![0x5a_u8; FSYNC_BYTES];
    let mut v = Vec::with_capacity(FSYNC_SAMPLES);
    for _ in 0..FSYNC_SAMPLES {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        v.push(t.elapsed());
    }
    Ok(v)
}

/// Writes `record_bytes`-byte records gathered into 1 MiB buffers, one
/// `write` + `fdatasync` per buffer, for about [`CEILING_TIME`]; bytes/s.
fn probe_ceiling(path: &PathBuf, record_bytes: usize) -> std::io::Result<f64> {
    let mut f = create(path)?;
    let record = vec![0xa5_u8; record_bytes.max(1)];
    let per_batch = (CEILING_BATCH_BYTES / record.len()).max(1);
    let mut batch = Vec::with_capacity(per_batch * record.len());
    let (start, mut written, mut in_file) = (Instant::now(), 0u64, 0u64);
    while start.elapsed() < CEILING_TIME {
        batch.clear();
        for _ in 0..per_batch {
            batch.extend_from_slice(&record);
        }
        f.write_all(&batch)?;
        f.sync_data()?;
        written += batch.len() as u64;
        in_file += batch.len() as u64;
        if in_file >= CEILING_FILE_MAX {
            f.set_len(0)?;
            f = OpenOptions::new().append(true).open(path)?;
            in_file = 0;
        }
    }
    Ok(written as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// [`RTT_SAMPLES`] ping-pongs of [`RTT_BYTES`] with an echo thread over
/// 127.0.0.1 (Nagle off), each timed.
fn probe_rtt() -> std::io::Result<Vec<Duration>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(RTT_IO_TIMEOUT))?;
        let mut buf = [0u8; RTT_BYTES];
        for _ in 0..RTT_SAMPLES {
            s.read_exact(&mut buf)?;
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let pings = ping(&addr);
    if pings.is_err() {
        // Unblocks an echo thread still in `accept` (our connect failed);
        // one that accepted ends on EOF or its read timeout.
        let _ = TcpStream::connect_timeout(&addr, RTT_IO_TIMEOUT);
    }
    let echoed = echo.join().map_err(|_| std::io::Error::other("echo thread panicked"))?;
    let v = pings?;
    echoed?;
    Ok(v)
}

/// The pinging side of [`probe_rtt`].
fn ping(addr: &std::net::SocketAddr) -> std::io::Result<Vec<Duration>> {
    let mut s = TcpStream::connect_timeout(addr, RTT_IO_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(RTT_IO_TIMEOUT))?;
    let mut buf = [7u8; RTT_BYTES];
    let mut v = Vec::with_capacity(RTT_SAMPLES);
    for _ in 0..RTT_SAMPLES {
        let t = Instant::now();
        s.write_all(&buf)?;
        s.read_exact(&mut buf)?;
        v.push(t.elapsed());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_sorted_samples() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        assert_eq!(quantile_us(&mut v, 0.5), 51.0);
        assert_eq!(quantile_us(&mut v, 0.0), 1.0);
        assert_eq!(quantile_us(&mut v, 1.0), 100.0);
        assert_eq!(quantile_us(&mut [], 0.5), 0.0);
    }
}
