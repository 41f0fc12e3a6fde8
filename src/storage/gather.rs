//! The write buffer of the log: one batch's records, laid out as they go on
//! disk, written with one positioned, vectored write.
//!
//! Record heads, small payloads and padding are copied into one reused
//! buffer; a large payload is not copied but referenced (`Bytes` are shared,
//! not cloned), so a batch of big entries costs the kernel's copy into the
//! page cache and the checksum, not a second copy in user space. The bytes
//! on disk are exactly those of [`super::record::Record::encode_flagged`].

use std::io::{self, IoSlice};

use bytes::Bytes;

use super::record::RecordRef;
use crate::fs::FsFile;

/// Payloads at least this large are referenced instead of copied.
const SHARE_BYTES_MIN: usize = 4096;

/// One run of the write, in order.
#[derive(Debug)]
enum Part {
    /// `copied[start..end]`.
    Copied { start: usize, end: usize },
    /// A payload referenced as is.
    Shared(Bytes),
}

/// A batch of encoded records waiting to be written.
///
/// Invariant: `len` is the sum of the parts' lengths plus the copied bytes
/// after the last part (`copied[run_start..]`, not yet closed into a part).
#[derive(Debug, Default)]
pub struct Gather {
    copied: Vec<u8>,
    parts: Vec<Part>,
    run_start: usize,
    len: usize,
}

impl Gather {
    /// Bytes the write will put on disk.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets everything (keeps the allocation).
    pub fn clear(&mut self) {
        self.copied.clear();
        self.parts.clear();
        self.run_start = 0;
        self.len = 0;
    }

    /// Appends `rec`, flagged as the first record of a write when
    /// `sync_start`.
    pub fn push(&mut self, rec: RecordRef<'_>, sync_start: bool) {
        let before = self.len;
        if rec.payload.len() >= SHARE_BYTES_MIN {
            let pad = rec.encode_head_flagged(&mut self.copied, sync_start);
            self.parts.push(Part::Copied { start: self.run_start, end: self.copied.len() });
            self.parts.push(Part::Shared(Bytes::clone(rec.payload)));
            self.run_start = self.copied.len();
            self.copied.resize(self.copied.len() + pad, 0);
        } else {
            rec.encode_flagged(&mut self.copied, sync_start);
        }
        self.len = before + rec.disk_bytes();
        debug_assert_eq!(self.len, self.parts_len() + self.copied.len() - self.run_start);
    }

    fn parts_len(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Copied { start, end } => end - start,
                Part::Shared(b) => b.len(),
            })
            .sum()
    }

    /// Writes everything at `offset` of `file` (all of it, or an error).
    ///
    /// # Errors
    /// The operating system's error; part of the data may have been written.
    pub fn write_all_at(&self, file: &dyn FsFile, offset: u64) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.parts.len() + 1);
        for p in &self.parts {
            slices.push(match p {
                Part::Copied { start, end } => IoSlice::new(&self.copied[*start..*end]),
                Part::Shared(b) => IoSlice::new(b),
            });
        }
        slices.push(IoSlice::new(&self.copied[self.run_start..]));
        file.write_all_vectored_at(&mut slices, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{GroupId, LogIndex, Term};
    use crate::fs::{Fs, OpenMode, RealFs};
    use crate::storage::record::{Kind, Record};

    fn rec(n: usize, index: u64) -> Record {
        let payload: Bytes = (0..n).map(|i| (i * 7 + n) as u8).collect();
        Record { kind: Kind::Normal, group: GroupId(3), term: Term(2), index: LogIndex(index), payload }
    }

    #[test]
    fn gathered_writes_put_the_same_bytes_on_disk_as_plain_encoding() {
        let path = std::env::temp_dir().join(format!("ringraft-gather-{}", std::process::id()));
        let file = RealFs.open(&path, OpenMode::CreateTruncate).unwrap();
        // Small and shared payloads mixed, and more parts than one pwritev
        // call takes.
        let sizes: Vec<usize> = (0..1500).map(|i| [0, 5, 4095, 4096, 9000][i % 5]).collect();
        let mut g = Gather::default();
        let mut want = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            let r = rec(*n, i as u64 + 1);
            g.push(r.as_ref(), i == 0);
            r.encode_flagged(&mut want, i == 0);
        }
        assert_eq!(g.len(), want.len());
        g.write_all_at(&*file, 8).unwrap();
        let mut got = vec![0u8; want.len()];
        file.read_exact_at(&mut got, 8).unwrap();
        assert!(got == want, "gathered bytes differ from encode_flagged");
        g.clear();
        assert!(g.is_empty());
        g.push(rec(10, 1).as_ref(), false);
        assert_eq!(g.len(), rec(10, 1).disk_bytes());
        RealFs.remove_file(&path).unwrap();
    }
}
