//! `ringraft`: the command-line tool. Stream commands (append, read, tail,
//! streams, create, delete, trim), cluster `status`, membership `admin`
//! commands through the client SDK (`ringraft_client`), and `demo` (a local
//! 3-process cluster, a workload, a crash, a verified result). Parses arguments,
//! calls the library and prints; nothing else.

use std::error::Error;
use std::io::{self, BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ringraft_client::{
    probe_status, AdminRequest, Client, ClientConfig, ClientError, ReadConsistency, Records, Role, Status,
};
use ringraft_tools::demo::{self, DemoConfig};

type CliResult = Result<(), Box<dyn Error>>;

/// The group admin commands change (the service's first group).
const ADMIN_GROUP: u64 = 1;
/// Records per append when reading them from stdin.
const STDIN_BATCH: usize = 1_000;

#[derive(Parser)]
#[command(name = "ringraft", version, about = "Client and operator tool for a ringraft cluster")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args)]
struct Global {
    /// Servers of the cluster, comma-separated host:port
    #[arg(long, global = true, env = "RINGRAFT_SERVERS", default_value = "127.0.0.1:7100", value_delimiter = ',')]
    servers: Vec<String>,
    /// The cluster id the servers must have
    #[arg(long, global = true, env = "RINGRAFT_CLUSTER_ID", default_value_t = 1)]
    cluster_id: u64,
    /// File holding the client token (tokens are never taken on the command line)
    #[arg(long, global = true, env = "RINGRAFT_TOKEN_FILE", value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// File holding the admin token for `admin` commands (default: --token-file)
    #[arg(long, global = true, env = "RINGRAFT_ADMIN_TOKEN_FILE", value_name = "PATH")]
    admin_token_file: Option<PathBuf>,
    /// Deadline of each request, retries included, in milliseconds (default 5000)
    #[arg(long, global = true, value_name = "MS")]
    timeout_ms: Option<u64>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Append records (the arguments, or one per line of stdin when none)
    Append {
        /// Stream name
        stream: String,
        /// Records to append, in order
        records: Vec<String>,
    },
    /// Read records, one per line (UTF-8, invalid bytes replaced)
    Read(ReadArgs),
    /// Print the end of a stream; with -f keep printing records as they arrive
    Tail(TailArgs),
    /// List the streams: name, first offset, next offset, records, incarnation
    Streams,
    /// Create a stream
    Create {
        /// Stream name
        stream: String,
    },
    /// Delete a stream and its records
    Delete {
        /// Stream name
        stream: String,
        /// Delete it only if it is still this incarnation (the INCARNATION
        /// column of `streams`): a stream deleted and created again since
        /// is left alone
        #[arg(long, value_name = "N")]
        incarnation: Option<u64>,
    },
    /// Discard a stream's records before an offset
    Trim {
        /// Stream name
        stream: String,
        /// Records before this offset are discarded
        #[arg(long, value_name = "OFFSET")]
        before: u64,
    },
    /// Ask every server in --servers for its status and print a table
    #[command(after_help = "A NOTE column says `disk full` while a server's disk refuses writes for lack of space \
                      and `starting` while its storage is not open yet (both clear by themselves).\n\n\
                      EXIT STATUS: 0 every server answered and one leads; 1 some server is down, unreachable or \
                      starting, or none leads; 2 usage (bad flag, unreadable token file); 3 some server refuses \
                      our credentials or belongs to another cluster (its line says which).")]
    Status {
        /// Print one JSON object per server, one per line, instead of the table
        #[arg(long)]
        json: bool,
    },
    /// Membership and maintenance commands (admin token)
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Run a local 3-process cluster with a workload, a leader crash and a check
    #[command(long_about = DEMO_ABOUT, after_help = "Server logs go to DIR/nodeN.log (kept with --keep or --dir, or on failure).")]
    Demo(DemoArgs),
}

#[derive(Args)]
struct ReadArgs {
    /// Stream name
    stream: String,
    /// First offset to read (default: the stream's first offset)
    #[arg(long, value_name = "OFFSET")]
    from: Option<u64>,
    /// Records to read at most
    #[arg(long, value_name = "N", default_value_t = 100)]
    count: u64,
    /// Soft cap on record bytes per request
    #[arg(long, value_name = "N", default_value_t = 1 << 20)]
    max_bytes: u32,
    /// How fresh the answer must be
    #[arg(long, value_enum, default_value_t = Consistency::Linearizable)]
    consistency: Consistency,
    #[command(flatten)]
    format: Format,
}

#[derive(Args)]
struct TailArgs {
    /// Stream name
    stream: String,
    /// Keep waiting for records and print them as they arrive (until killed)
    #[arg(short = 'f', long)]
    follow: bool,
    /// Start at this offset, or `end` for only new records (default: the last --lines records)
    #[arg(long, value_name = "OFFSET|end")]
    from: Option<String>,
    /// Records before the end to start at, when --from is not given
    #[arg(short = 'n', long, value_name = "N", default_value_t = 10)]
    lines: u64,
    #[command(flatten)]
    format: Format,
}

#[derive(Args, Clone, Copy)]
struct Format {
    /// Print records as hex instead of UTF-8
    #[arg(long)]
    hex: bool,
    /// Print `offset<TAB>record`
    #[arg(long)]
    offsets: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Consistency {
    /// The leader, after confirming its leadership
    Linearizable,
    /// The leader while its lease holds (no round trip)
    Lease,
    /// Any node, after a read index from the leader
    Follower,
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Add a node as a learner
    AddLearner {
        /// Node id
        node: u64,
        /// Its address, host:port
        addr: String,
    },
    /// Make a caught-up learner a voter (as `promote`; ADDR is checked for syntax, not used)
    AddVoter {
        /// Node id
        node: u64,
        /// host:port, checked for syntax only: the address the node was added with as a learner stays
        addr: String,
    },
    /// Remove a voter or a learner (whichever the node is)
    Remove {
        /// Node id
        node: u64,
    },
    /// Promote a learner to voter (refused, naming its lag, until it has caught up)
    Promote {
        /// Node id
        node: u64,
    },
    /// Replace the voters and learners at once (joint consensus; new voters must be caught-up learners)
    ChangePeers {
        /// The new voters, comma-separated node ids
        #[arg(long, value_delimiter = ',', required = true)]
        voters: Vec<u64>,
        /// The new learners, comma-separated node ids
        #[arg(long, value_delimiter = ',')]
        learners: Vec<u64>,
    },
    /// Hand leadership to a voter (default: the most caught-up one) and wait
    /// until it leads: prints `ok: node N leads term T`, or exits 1 saying who
    /// still leads
    TransferLeader {
        /// Node id (omit for the most caught-up voter)
        node: Option<u64>,
        /// How long to wait for a new leader: two election timeouts at the
        /// servers' default (1-2 s)
        #[arg(long, value_name = "MS", default_value_t = 4000)]
        wait_ms: u64,
    },
    /// Take a snapshot now
    Snapshot,
}

const DEMO_ABOUT: &str = "\
Starts 3 ringraft-server processes on free ports of 127.0.0.1 (the binary
next to this one, built first under `cargo run`, or $RINGRAFT_SERVER_BIN),
appends records from several pipelined clients, SIGKILLs the leader half-way
and restarts it a second later, then reads the stream back from each node
and checks that every acknowledged record is there exactly once, at its
offset, on all 3 nodes. The last line is `verified N records on 3 nodes`.";

/// `ringraft demo` flags (they ignore the global client options).
#[derive(Args)]
struct DemoArgs {
    /// records (one-record appends) to get acknowledged in total
    #[arg(long, value_name = "N", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,
    /// client threads, each with its own connection and session
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    clients: u64,
    /// appends each client keeps in flight
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    window: u32,
    /// bytes per record (the first 16 are the client id and sequence)
    #[arg(long, value_name = "BYTES", default_value_t = 128, value_parser = clap::value_parser!(u32).range(16..=1_048_576))]
    size: u32,
    /// where the data directories and server logs go; must be new or
    /// empty; kept afterwards (default: a fresh temp dir, removed afterwards)
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// keep the temp dir (data and server logs) afterwards
    #[arg(long)]
    keep: bool,
    /// do not kill the leader
    #[arg(long)]
    no_crash: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Demo(args) => return run_demo(args),
        Cmd::Status { json } => return status(&cli.global, json),
        Cmd::Admin(op) => admin(&cli.global, op),
        cmd => stream_cmd(&cli.global, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed stdout (`| head`) is not an error worth reporting.
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringraft: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_demo(a: DemoArgs) -> ExitCode {
    let mut cfg = DemoConfig::new();
    cfg.records = a.records;
    cfg.clients = a.clients;
    cfg.window = a.window as usize;
    cfg.size = a.size as usize;
    cfg.keep = a.keep;
    cfg.crash = !a.no_crash;
    cfg.terminate = Some(ringraft_tools::demo::sigterm);
    if let Some(dir) = a.dir {
        // A directory the user names is never deleted.
        cfg.dir = dir;
        cfg.keep = true;
    }
    match demo::run(&cfg) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a token file; surrounding whitespace (a trailing newline) is dropped.
fn read_token(path: &PathBuf) -> Result<Bytes, Box<dyn Error>> {
    let raw = std::fs::read(path).map_err(|e| format!("token file {}: {e}", path.display()))?;
    let text = raw.trim_ascii();
    Ok(Bytes::copy_from_slice(text))
}

fn client_config(g: &Global, admin: bool) -> Result<ClientConfig, Box<dyn Error>> {
    let mut cfg = ClientConfig::new(g.servers.clone(), g.cluster_id);
    let file = if admin { g.admin_token_file.as_ref().or(g.token_file.as_ref()) } else { g.token_file.as_ref() };
    if let Some(path) = file {
        cfg.token = read_token(path)?;
    }
    if admin {
        cfg.role = Role::Admin;
    }
    if let Some(ms) = g.timeout_ms {
        cfg.request_timeout = Duration::from_millis(ms);
    }
    Ok(cfg)
}

fn stream_cmd(g: &Global, cmd: Cmd) -> CliResult {
    let mut c = Client::connect(client_config(g, false)?)?;
    let mut out = BufWriter::new(io::stdout().lock());
    match cmd {
        Cmd::Append { stream, records } => append(&mut c, &mut out, &stream, records)?,
        Cmd::Read(a) => read(&mut c, &mut out, &a)?,
        Cmd::Tail(a) => tail(&mut c, &mut out, &a)?,
        Cmd::Streams => {
            writeln!(out, "{:<24} {:>14} {:>14} {:>14} {:>12}", "NAME", "FIRST", "NEXT", "RECORDS", "INCARNATION")?;
            for s in c.list_streams()? {
                let n = s.next_offset.saturating_sub(s.first_offset);
                let (first, next, inc) = (s.first_offset, s.next_offset, s.incarnation);
                writeln!(out, "{:<24} {first:>14} {next:>14} {n:>14} {inc:>12}", s.name)?;
            }
        }
        Cmd::Create { stream } => {
            let group = c.create_stream(&stream)?;
            writeln!(out, "created stream {stream} (group {group})")?;
        }
        Cmd::Delete { stream, incarnation } => {
            c.delete_stream_incarnation(&stream, incarnation.unwrap_or(0))?;
            writeln!(out, "deleted stream {stream}")?;
        }
        Cmd::Trim { stream, before } => {
            let first = c.trim(&stream, before)?;
            writeln!(out, "trimmed {stream}: first offset now {first}")?;
        }
        // main() dispatches these before calling here.
        Cmd::Status { .. } | Cmd::Admin(_) | Cmd::Demo(_) => unreachable!("dispatched in main"),
    }
    out.flush()?;
    Ok(())
}

fn append(c: &mut Client, out: &mut impl Write, stream: &str, records: Vec<String>) -> CliResult {
    let mut batches: Vec<Vec<Bytes>> = Vec::new();
    if records.is_empty() {
        let mut batch = Vec::new();
        for line in io::stdin().lock().lines() {
            batch.push(Bytes::from(line?));
            if batch.len() == STDIN_BATCH {
                batches.push(std::mem::take(&mut batch));
            }
        }
        batches.push(batch);
    } else {
        batches.push(records.into_iter().map(Bytes::from).collect());
    }
    for batch in batches.into_iter().filter(|b| !b.is_empty()) {
        let ack = c.append(stream, batch)?;
        let end = ack.first_offset + u64::from(ack.count);
        writeln!(out, "appended {} records at offsets {}..{}", ack.count, ack.first_offset, end)?;
    }
    Ok(())
}

fn print_records(out: &mut impl Write, r: &Records, f: Format) -> io::Result<()> {
    for (i, rec) in r.records.iter().enumerate() {
        if f.offsets {
            write!(out, "{}\t", r.first_offset + i as u64)?;
        }
        if f.hex {
            let hex: String = rec.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(out, "{hex}")?;
        } else {
            writeln!(out, "{}", String::from_utf8_lossy(rec))?;
        }
    }
    Ok(())
}

/// The stream's `(first offset, next offset)`, from the stream list.
fn bounds(c: &mut Client, stream: &str) -> Result<(u64, u64), ClientError> {
    let all = c.list_streams()?;
    let s = all.into_iter().find(|s| s.name == stream);
    s.map(|s| (s.first_offset, s.next_offset)).ok_or_else(|| ClientError::UnknownStream(stream.to_owned()))
}

fn read(c: &mut Client, out: &mut impl Write, a: &ReadArgs) -> CliResult {
    let consistency = match a.consistency {
        Consistency::Linearizable => ReadConsistency::Linearizable,
        Consistency::Lease => ReadConsistency::Lease,
        Consistency::Follower => ReadConsistency::Follower,
    };
    let mut offset = match a.from {
        Some(o) => o,
        None => bounds(c, &a.stream)?.0,
    };
    let mut left = a.count;
    let mut first = true;
    while left > 0 {
        let want = u32::try_from(left).unwrap_or(u32::MAX);
        let r = match c.read(&a.stream, offset, want, a.max_bytes, consistency) {
            Ok(r) => r,
            // Past the tail after some records: we have read everything.
            Err(ClientError::OutOfRange { .. }) if !first => break,
            Err(e) => return Err(e.into()),
        };
        first = false;
        if r.records.is_empty() {
            break;
        }
        print_records(out, &r, a.format)?;
        left = left.saturating_sub(r.records.len() as u64);
        offset = r.next_offset;
    }
    Ok(())
}

fn tail(c: &mut Client, out: &mut impl Write, a: &TailArgs) -> CliResult {
    let (first, next) = bounds(c, &a.stream)?;
    let mut offset = match a.from.as_deref() {
        Some("end") => next,
        Some(o) => o.parse().map_err(|_| format!("--from: expected an offset or `end`, got {o}"))?,
        None => next.saturating_sub(a.lines).max(first),
    };
    // Without -f: what is there now, up to the end seen at the start.
    while !a.follow && offset < next {
        let r = c.read(&a.stream, offset, 1_000, 1 << 20, ReadConsistency::Linearizable)?;
        if r.records.is_empty() {
            break;
        }
        print_records(out, &r, a.format)?;
        offset = r.next_offset;
    }
    if !a.follow {
        return Ok(());
    }
    loop {
        match c.tail(&a.stream, offset, 1_000, 1 << 20, Duration::from_secs(10)) {
            Ok(r) => {
                print_records(out, &r, a.format)?;
                out.flush()?;
                offset = r.next_offset.max(offset);
            }
            // No answer in time (a leader change, a slow node): ask again.
            Err(ClientError::Timeout) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// `ringraft status` exit codes (documented in `--help` and the README).
mod status_exit {
    /// Every server answered, serves, and one of them leads.
    pub const ALL_WELL: u8 = 0;
    /// Some server is down, unreachable or still starting, or none leads.
    pub const DEGRADED: u8 = 1;
    /// Usage: a bad flag or value, an unreadable token file.
    pub const USAGE: u8 = 2;
    /// Some server refuses our credentials or belongs to another cluster:
    /// the command's settings are wrong, not (necessarily) the cluster.
    pub const REFUSED: u8 = 3;
}

/// What `status` found at one server.
enum Probe {
    Up(Status),
    Down(ClientError),
    /// Refused: the reason for humans and its JSON tag.
    Refused(String, &'static str),
}

fn probe_one(cfg: &ClientConfig, addr: &str) -> Probe {
    match probe_status(cfg, addr) {
        Ok(s) => Probe::Up(s),
        Err(ClientError::WrongCluster) => Probe::Refused(
            format!("refused: the server belongs to another cluster (not --cluster-id {})", cfg.cluster_id),
            "cluster",
        ),
        Err(ClientError::Unauthorized) => Probe::Refused(
            "refused: the server refuses our credentials (check --token-file / RINGRAFT_TOKEN_FILE)".into(),
            "credentials",
        ),
        Err(e) => Probe::Down(e),
    }
}

fn status(g: &Global, json: bool) -> ExitCode {
    let cfg = match client_config(g, false) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringraft: {e}");
            return ExitCode::from(status_exit::USAGE);
        }
    };
    let probes: Vec<(&String, Probe)> = g.servers.iter().map(|a| (a, probe_one(&cfg, a))).collect();
    let (code, why) = verdict(&probes);
    let printed = print_statuses(&probes, json);
    if let Some(why) = why {
        eprintln!("ringraft status: {why} (exit {code})");
    }
    match printed {
        // A closed stdout (`| head`) still gets the verdict.
        Ok(()) => ExitCode::from(code),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(code),
        Err(e) => {
            eprintln!("ringraft: {e}");
            ExitCode::from(status_exit::DEGRADED)
        }
    }
}

/// The exit code for what the probes found, and why when it is not 0.
fn verdict(probes: &[(&String, Probe)]) -> (u8, Option<String>) {
    let total = probes.len();
    let refused = probes.iter().filter(|(_, p)| matches!(p, Probe::Refused(..))).count();
    let degraded = probes
        .iter()
        .filter(|(_, p)| match p {
            Probe::Up(s) => s.groups.is_empty(),
            Probe::Down(_) => true,
            Probe::Refused(..) => false,
        })
        .count();
    let leads = probes.iter().any(|(_, p)| matches!(p, Probe::Up(s) if s.groups.iter().any(|gs| gs.role == 3)));
    if refused > 0 {
        return (status_exit::REFUSED, Some(format!("{refused} of {total} servers refused us")));
    }
    if degraded == 0 && leads {
        return (status_exit::ALL_WELL, None);
    }
    let mut what = Vec::new();
    if degraded > 0 {
        what.push(format!("{degraded} of {total} servers down, unreachable or starting"));
    }
    if !leads {
        what.push("no server leads".into());
    }
    (status_exit::DEGRADED, Some(what.join("; ")))
}

/// Prints one line (or JSON object) per server.
fn print_statuses(probes: &[(&String, Probe)], json: bool) -> io::Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    if !json {
        writeln!(
            out,
            "{:<22} {:>5} {:>6} {:>9} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10}  NOTE",
            "SERVER", "NODE", "GROUP", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAST", "FSYNCS"
        )?;
    }
    for (addr, probe) in probes {
        match (probe, json) {
            (Probe::Up(s), true) => writeln!(out, "{}", status_json(addr, s))?,
            (Probe::Up(s), false) => print_status(&mut out, addr, s)?,
            (Probe::Down(e), true) => {
                let e = json_str(&e.to_string());
                writeln!(out, "{{\"server\":{},\"up\":false,\"error\":{e}}}", json_str(addr))?
            }
            (Probe::Down(e), false) => writeln!(out, "{addr:<22} down ({e})")?,
            (Probe::Refused(why, tag), true) => {
                let (a, w) = (json_str(addr), json_str(why));
                writeln!(out, "{{\"server\":{a},\"up\":true,\"refused\":\"{tag}\",\"error\":{w}}}")?
            }
            (Probe::Refused(why, _), false) => writeln!(out, "{addr:<22} {why}")?,
        }
    }
    out.flush()
}

fn role_name(role: u8) -> &'static str {
    match role {
        1 => "follower",
        2 => "candidate",
        3 => "leader",
        4 => "learner",
        _ => "unknown",
    }
}

/// The NOTE column: what the server says about its health.
fn health_note(s: &Status) -> String {
    let Some(h) = s.health else { return "(health not reported: older server)".into() };
    let mut notes = Vec::new();
    if h.starting {
        notes.push("starting");
    }
    if h.disk_full {
        notes.push("disk full");
    }
    notes.join(", ")
}

fn print_status(out: &mut impl Write, addr: &str, s: &Status) -> io::Result<()> {
    let note = health_note(s);
    if s.groups.is_empty() {
        writeln!(out, "{addr:<22} {:>5} (no groups)  {note}", s.node_id)?;
    }
    for g in &s.groups {
        writeln!(
            out,
            "{addr:<22} {:>5} {:>6} {:>9} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10}  {note}",
            s.node_id,
            g.group,
            role_name(g.role),
            g.term,
            g.leader,
            g.commit,
            g.applied,
            g.last_index,
            s.fsyncs
        )?;
        for p in &g.peers {
            let lag = g.last_index.saturating_sub(p.matched);
            writeln!(out, "{:<22}   peer {:>5}  match {:>10}  lag {:>10}", "", p.node, p.matched, lag)?;
        }
    }
    Ok(())
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One server's status as a JSON object (`disk_full` and `starting` are
/// null from a server that does not report its health).
fn status_json(addr: &str, s: &Status) -> String {
    let flag = |f: fn(&ringraft_client::Health) -> bool| s.health.as_ref().map_or("null".into(), |h| f(h).to_string());
    let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let groups: Vec<String> = s
        .groups
        .iter()
        .map(|g| {
            let peers: Vec<String> = g
                .peers
                .iter()
                .map(|p| format!("{{\"node\":{},\"match\":{},\"next\":{}}}", p.node, p.matched, p.next))
                .collect();
            format!(
                "{{\"group\":{},\"role\":{},\"term\":{},\"leader\":{},\"commit\":{},\"applied\":{},\
                 \"last_index\":{},\"voters\":[{}],\"learners\":[{}],\"peers\":[{}]}}",
                g.group,
                json_str(role_name(g.role)),
                g.term,
                g.leader,
                g.commit,
                g.applied,
                g.last_index,
                ids(&g.voters),
                ids(&g.learners),
                peers.join(",")
            )
        })
        .collect();
    format!(
        "{{\"server\":{},\"up\":true,\"node\":{},\"disk_full\":{},\"starting\":{},\"fsyncs\":{},\
         \"entries_written\":{},\"groups\":[{}]}}",
        json_str(addr),
        s.node_id,
        flag(|h| h.disk_full),
        flag(|h| h.starting),
        s.fsyncs,
        s.entries_written,
        groups.join(",")
    )
}

/// The node that leads according to `servers` (the highest term wins if
/// two say so, as a deposed leader may for a moment), with its term.
fn current_leader(cfg: &ClientConfig, servers: &[String]) -> Option<(u64, u64)> {
    servers
        .iter()
        .filter_map(|a| probe_status(cfg, a).ok())
        .filter_map(|s| {
            s.groups.iter().find(|gs| gs.group == ADMIN_GROUP && gs.role == 3).map(|gs| (gs.term, s.node_id))
        })
        .max()
        .map(|(term, node)| (node, term))
}

/// `admin transfer-leader`: the leader answers once the transfer has
/// started (PROTOCOL.md: `index` is the target, `leader` the old leader);
/// the outcome is a new leader within `wait`, which Status shows.
fn transfer_leader(g: &Global, c: &mut Client, target: u64, wait: Duration) -> CliResult {
    let ack = c.admin(ADMIN_GROUP, AdminRequest::TransferLeader { target })?;
    let (old, target) = (ack.leader, if ack.index != 0 { ack.index } else { target });
    let mut cfg = client_config(g, false)?;
    // A dead server must not hold each round up past the wait.
    cfg.connect_timeout = cfg.connect_timeout.min(Duration::from_millis(300));
    cfg.request_timeout = cfg.request_timeout.min(Duration::from_millis(500));
    let deadline = std::time::Instant::now() + wait;
    loop {
        let leader = current_leader(&cfg, &g.servers);
        match leader {
            Some((node, term)) if node != old || target == old => {
                println!("ok: node {node} leads term {term}");
                return Ok(());
            }
            _ if std::time::Instant::now() >= deadline => {
                let who = match leader {
                    Some((node, term)) => format!("node {node} still leads (term {term})"),
                    None => "no node leads now (an election may be under way)".into(),
                };
                let target = if target == 0 { "the chosen voter".into() } else { target.to_string() };
                return Err(format!("transfer to {target} did not finish; {who}").into());
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn admin(g: &Global, op: AdminCmd) -> CliResult {
    let mut c = Client::connect(client_config(g, true)?)?;
    let req = match op {
        AdminCmd::AddLearner { node, addr } => AdminRequest::AddLearner { node, addr },
        AdminCmd::AddVoter { node, addr } => AdminRequest::AddVoter { node, addr },
        AdminCmd::Promote { node } => AdminRequest::AddVoter { node, addr: String::new() },
        AdminCmd::Remove { node } => {
            // A learner is removed with RemoveLearner; ask the node we are
            // connected to which set it is in.
            let st = c.status()?;
            let learner = st.groups.iter().any(|gs| gs.group == ADMIN_GROUP && gs.learners.contains(&node));
            if learner {
                AdminRequest::RemoveLearner { node }
            } else {
                AdminRequest::RemoveVoter { node }
            }
        }
        AdminCmd::ChangePeers { voters, learners } => AdminRequest::ChangePeers { voters, learners },
        AdminCmd::TransferLeader { node, wait_ms } => {
            return transfer_leader(g, &mut c, node.unwrap_or(0), Duration::from_millis(wait_ms))
        }
        AdminCmd::Snapshot => AdminRequest::Snapshot,
    };
    let ack = c.admin(ADMIN_GROUP, req)?;
    println!("ok: took effect at index {} (leader {})", ack.index, ack.leader);
    Ok(())
}
