//! The intake journal's file: numbered, checksummed records appended in
//! groups, each group made durable by one `fdatasync` shared by every
//! request in it. The file is lengthened ahead of its records, so that
//! most syncs need not also record a new length. An append returns once
//! its record is synced (or, with `JournalSync::Within`, written); the
//! applier (`intake/journaled.rs`) reads the synced records behind the
//! writer and marks how far it has committed them, and how far the
//! database has made those commits durable. A journal drained that far is
//! cut back to its header, so the file holds only what the database might
//! still lose.
//!
//! Written by hand: what is needed is one append-only file with a group
//! sync and a torn tail cut off on open. The write-ahead-log crates bring
//! their own threads, segment layouts and recovery rules on top of that.
//!
//! File: a 32-byte header (`MAGIC`, then the journal's id), then records:
//! payload length (u32 LE), number (u64 LE), the first 8 bytes of
//! SHA-256(number ‖ payload), payload; then zeros, the room made ahead.
//! Numbers rise by one per record and carry on across truncation; the
//! database keeps the last one applied.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::sync::{Notify, oneshot};
use uuid::Uuid;

const MAGIC: &[u8; 16] = b"kiroku-intake-j1";
const HEADER_LEN: u64 = 32;
const RECORD_HEAD_LEN: usize = 4 + 8 + 8;
/// Far above the largest request intake takes (the webhooks' 16 MiB).
pub const RECORD_MAX: usize = 64 << 20;
/// A drained journal at least this long is cut back to its header.
const TRUNCATE_AT: u64 = 16 << 20;
/// How far the applier may fall behind before appends are refused.
const BACKLOG_MAX: u64 = 1 << 30;
/// The most one group writes before its sync.
const GROUP_BYTES_MAX: usize = 1 << 20;
/// How far the file is lengthened past the records when a group does not
/// fit: a sync that must also record the file's new length takes about
/// half as long again as one that need not (ext4, 600-byte records: 170
/// against 120 µs), and a single alert's wait is mostly its sync.
const ROOM_AHEAD: u64 = 16 << 20;
/// What a crash can leave written past the last whole record: one group,
/// whose last record may be as long as any.
const TORN_MAX: u64 = (GROUP_BYTES_MAX + RECORD_MAX + RECORD_HEAD_LEN) as u64;
/// How long closing waits for the applier to finish the transaction it
/// is in: longer only while the database is away, and then what it has
/// not committed is applied on the next start.
const APPLIER_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// When an append is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JournalSync {
    /// Once the disk holds it (`fdatasync`): kept across any crash.
    #[default]
    BeforeAnswer,
    /// Once it is written to the file, so kept if Kiroku is killed; synced
    /// about this long after, so a crash of the machine itself may lose
    /// what was answered within it.
    Within(std::time::Duration),
}

/// Why the intake journal cannot be opened, or a request not appended.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("intake journal {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("intake journal {0} is not an intake journal")]
    Foreign(PathBuf),
    #[error(
        "intake journal {0} is in use by another Kiroku process; give each node a data directory of its own"
    )]
    InUse(PathBuf),
    #[error("intake journal {path}: record {seq} is damaged")]
    Damaged { path: PathBuf, seq: u64 },
    #[error(
        "intake journal {path}: record {seq} is damaged, with {bytes} bytes after it, more than \
         a crash leaves unsynced; move the file aside to start without them"
    )]
    DamagedMidway { path: PathBuf, seq: u64, bytes: u64 },
    #[error("the intake journal is {0} bytes behind; try again shortly")]
    Backlog(u64),
    #[error("a request of {0} bytes is more than an intake journal record holds")]
    TooLarge(usize),
    #[error("the intake journal cannot be written since an earlier failure: {0}")]
    Broken(String),
    #[error("the intake journal is closed: Kiroku is stopping")]
    Closed,
    #[error("intake journal: cannot read how far it is applied: {0}")]
    Store(#[from] kiroku_store::StoreError),
}

/// One synced record.
pub(crate) struct Record {
    pub(crate) seq: u64,
    pub(crate) payload: Vec<u8>,
    /// Where the next record starts.
    pub(crate) end: u64,
}

struct State {
    /// Where the records written end; beyond `durable_end` only with
    /// `JournalSync::Within`, until the syncer's next sync. The writer
    /// writes the next group here.
    written_end: u64,
    /// The file's length: zeros from `written_end` to here.
    room_end: u64,
    /// Where the synced records end.
    durable_end: u64,
    /// Where the records the applier has committed end; it reads on from
    /// here.
    applied_end: u64,
    /// Where the records whose commits the database has synced end: the
    /// journal is cut back only once this reaches `durable_end`.
    kept_end: u64,
    broken: Option<String>,
    closed: bool,
    /// With `JournalSync::Within`: the writer wants a sync now, to make
    /// room; the writer has ended, so the syncer syncs what is left and
    /// ends. (A sync under way needs no flag: the syncer starts one only
    /// while `written_end` is past `durable_end`, and only it moves
    /// `durable_end`, to where `written_end` was when it began.)
    room_wanted: bool,
    writer_done: bool,
}

struct Append {
    payload: Vec<u8>,
    reply: oneshot::Sender<Result<u64, JournalError>>,
}

pub(crate) struct Journal {
    id: Uuid,
    path: PathBuf,
    state: Mutex<State>,
    /// Between the writer and the syncer (`JournalSync::Within`): woken
    /// when records are written or synced, room is wanted, or the writer
    /// ends.
    changed: std::sync::Condvar,
    /// Woken when synced records are added; one waiter, the applier.
    grown: Notify,
    reader: Mutex<File>,
    /// Taken on close, which ends the writer once it has written what was
    /// queued.
    appends: Mutex<Option<std::sync::mpsc::Sender<Append>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Resolves once the applier has ended (`applier_started`).
    applier_ended: Mutex<Option<oneshot::Receiver<()>>>,
    /// The file once more, sharing the writer's lock on it, for each
    /// applier to hold; let go on close.
    locked: Mutex<Option<File>>,
}

/// Held by the applier for as long as it runs. Dropped as it ends, it lets
/// `close` return, and lets go of the file's lock, which it shares: no
/// other Kiroku may open the journal, and apply its records once more,
/// while this applier may still commit them (closing gives up waiting for
/// it while the database is away).
pub(crate) struct ApplierRunning {
    // Dropped first: `close`, woken by the other, finds the lock let go.
    _locked: Option<File>,
    _ended: oneshot::Sender<()>,
}

/// An opened journal file, its torn tail cut off, not yet written to.
pub(crate) struct JournalFile {
    id: Uuid,
    path: PathBuf,
    file: File,
    end: u64,
    len: u64,
    last_seq: u64,
}

impl JournalFile {
    pub(crate) fn open(path: &Path) -> Result<JournalFile, JournalError> {
        let io = io_error(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true);
        let mut file = owner_only(&mut options).open(path).map_err(io)?;
        // Held for as long as the file is open: two writers would
        // interleave their records.
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => JournalError::InUse(path.to_owned()),
            std::fs::TryLockError::Error(e) => io(e),
        })?;
        let len = file.metadata().map_err(io)?.len();
        let created = len < HEADER_LEN;
        let id = if created {
            // New, or cut short while its header was written: nothing in it
            // was ever acknowledged.
            let id = Uuid::now_v7();
            file.set_len(0).map_err(io)?;
            let mut header = MAGIC.to_vec();
            header.extend_from_slice(id.as_bytes());
            file.write_all(&header).map_err(io)?;
            file.sync_all().map_err(io)?;
            sync_parent(path).map_err(io)?;
            id
        } else {
            let mut header = [0u8; HEADER_LEN as usize];
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.read_exact(&mut header).map_err(io)?;
            if &header[..16] != MAGIC {
                return Err(JournalError::Foreign(path.to_owned()));
            }
            Uuid::from_slice(&header[16..]).map_err(|_| JournalError::Foreign(path.to_owned()))?
        };
        let (end, last_seq) = scan(&file, path)?;
        let mut len = file.metadata().map_err(io)?.len();
        let torn = written_past(&file, end, len).map_err(io)? - end;
        if torn > TORN_MAX {
            return Err(JournalError::DamagedMidway {
                path: path.to_owned(),
                seq: last_seq + 1,
                bytes: torn,
            });
        }
        if torn > 0 {
            // The last group, cut short by a crash of the machine: never
            // synced, so never answered, unless it was answered before
            // its sync (`JournalSync::Within`) or the disk lost a synced
            // block. Kept aside, so that no cut is past recovering.
            let aside = keep_aside(&file, path, end, torn).map_err(io)?;
            tracing::warn!(
                bytes = torn,
                kept_in = %aside.display(),
                "intake journal: a torn last group, never synced, is kept aside and cut off"
            );
            file.set_len(end).map_err(io)?;
            len = end;
        }
        // Records a killed process wrote and did not sync are whole in the
        // kernel's copy of the file: sync them before they count as synced.
        // A file made just now was synced whole with its header.
        if !created {
            file.sync_data().map_err(io)?;
        }
        Ok(JournalFile {
            id,
            path: path.to_owned(),
            file,
            end,
            len,
            last_seq,
        })
    }

    pub(crate) fn id(&self) -> Uuid {
        self.id
    }

    /// Starts the writer; `applied` is the last record the database holds
    /// as applied, so that numbering carries on past it after a truncation;
    /// `sync` says when appends are answered.
    pub(crate) fn start(
        self,
        applied: u64,
        sync: JournalSync,
    ) -> Result<Arc<Journal>, JournalError> {
        let io = io_error(&self.path);
        let reader = File::open(&self.path).map_err(io)?;
        let locked = self.file.try_clone().map_err(io)?;
        let (appends, queue) = std::sync::mpsc::channel();
        let journal = Arc::new(Journal {
            id: self.id,
            path: self.path,
            state: Mutex::new(State {
                written_end: self.end,
                room_end: self.len,
                durable_end: self.end,
                applied_end: HEADER_LEN,
                kept_end: HEADER_LEN,
                broken: None,
                closed: false,
                room_wanted: false,
                writer_done: false,
            }),
            changed: std::sync::Condvar::new(),
            grown: Notify::new(),
            reader: Mutex::new(reader),
            appends: Mutex::new(Some(appends)),
            writer: Mutex::new(None),
            applier_ended: Mutex::new(None),
            locked: Mutex::new(Some(locked)),
        });
        let next_seq = self.last_seq.max(applied) + 1;
        let writer = journal.clone();
        let thread = std::thread::Builder::new()
            .name("intake-journal".into())
            .spawn(move || write_groups(writer, self.file, next_seq, queue, sync))
            .map_err(io_error(&journal.path))?;
        *journal.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        Ok(journal)
    }
}

/// Where the whole, intact records end, and the last one's number.
fn scan(file: &File, path: &Path) -> Result<(u64, u64), JournalError> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader
        .seek(SeekFrom::Start(HEADER_LEN))
        .map_err(io_error(path))?;
    let (mut end, mut last_seq) = (HEADER_LEN, 0);
    while let Ok(Some((seq, payload))) = read_record(&mut reader) {
        // Numbers rise by one within a file: any other is not this
        // file's next record, whatever its checksum says.
        if end > HEADER_LEN && seq != last_seq + 1 {
            break;
        }
        last_seq = seq;
        end += (RECORD_HEAD_LEN + payload.len()) as u64;
    }
    Ok((end, last_seq))
}

/// Where the bytes that are not zero end in `file`, from `from` to `len`:
/// past the last whole record, only a torn group is written. Reads no
/// further once that is more than a crash leaves (`TORN_MAX`).
fn written_past(mut file: &File, from: u64, len: u64) -> io::Result<u64> {
    file.seek(SeekFrom::Start(from))?;
    let (mut at, mut written_end) = (from, from);
    let mut chunk = vec![0u8; 1 << 20];
    while at < len && written_end - from <= TORN_MAX {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        if let Some(last) = chunk[..n].iter().rposition(|b| *b != 0) {
            written_end = at + last as u64 + 1;
        }
        at += n as u64;
    }
    Ok(written_end)
}

/// An I/O error on the journal at `path`.
fn io_error(path: &Path) -> impl Fn(io::Error) -> JournalError + Copy + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What monitoring sent is the owner's to read, as the database is.
fn owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    options
}

/// Writes `bytes` to `base`, or where a file of other bytes has that name
/// (a record number reused after the database was restored from a
/// backup), to `base-2`, `base-3`…: never over another file, and never
/// seen half written, being written and synced under `.tmp` first, then
/// linked.
fn keep_beside(base: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let suffixed = |suffix: &str| {
        let mut name = base.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let written = suffixed(".tmp");
    let mut out =
        owner_only(OpenOptions::new().write(true).create(true).truncate(true)).open(&written)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    let mut n = 1;
    let kept = loop {
        let target = if n == 1 {
            base.to_owned()
        } else {
            suffixed(&format!("-{n}"))
        };
        match std::fs::hard_link(&written, &target) {
            Ok(()) => break target,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if std::fs::read(&target)? == bytes {
                    break target;
                }
            }
            Err(e) => return Err(e),
        }
        n += 1;
    };
    std::fs::remove_file(&written)?;
    sync_parent(base)?;
    Ok(kept)
}

/// The journal's own name with `suffix`, in its folder: where what it
/// keeps aside goes.
fn beside(path: &Path, suffix: impl std::fmt::Display) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}

/// Keeps the `bytes` after `end` (at most `TORN_MAX`) in a file beside
/// the journal, named by the time.
fn keep_aside(mut file: &File, path: &Path, end: u64, bytes: u64) -> io::Result<PathBuf> {
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S%.fZ");
    let mut torn = Vec::with_capacity(bytes as usize);
    file.seek(SeekFrom::Start(end))?;
    file.take(bytes).read_to_end(&mut torn)?;
    keep_beside(&beside(path, format_args!("torn-{stamp}")), &torn)
}

fn checksum(seq: u64, payload: &[u8]) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(seq.to_le_bytes())
        .chain_update(payload)
        .finalize();
    let mut check = [0; 8];
    check.copy_from_slice(&digest[..8]);
    check
}

fn encode(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&checksum(seq, payload));
    out.extend_from_slice(payload);
}

/// The next record, `None` at a clean end, an error for a torn or damaged
/// one.
fn read_record(reader: &mut impl Read) -> io::Result<Option<(u64, Vec<u8>)>> {
    let mut head = [0u8; RECORD_HEAD_LEN];
    match reader.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let seq = u64::from_le_bytes(head[4..12].try_into().expect("8 bytes"));
    if len > RECORD_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "record too long",
        ));
    }
    let mut payload = vec![0; len];
    reader.read_exact(&mut payload)?;
    if checksum(seq, &payload) != head[12..] {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "bad checksum"));
    }
    Ok(Some((seq, payload)))
}

#[cfg(unix)]
fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> io::Result<()> {
    Ok(())
}

impl Journal {
    pub(crate) fn id(&self) -> Uuid {
        self.id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `payload` and returns its number once it is synced, or
    /// written, as the journal's `JournalSync` says.
    pub(crate) async fn append(&self, payload: Vec<u8>) -> Result<u64, JournalError> {
        // A record too long to read back would end the journal there.
        if payload.len() > RECORD_MAX {
            return Err(JournalError::TooLarge(payload.len()));
        }
        let (reply, answer) = oneshot::channel();
        self.appends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .ok_or(JournalError::Closed)?
            .send(Append { payload, reply })
            .map_err(|_| JournalError::Closed)?;
        answer.await.map_err(|_| JournalError::Closed)?
    }

    /// Takes no more appends, and returns once those queued are written,
    /// the file is let go and the applier, if one is registered, has
    /// ended, or after `APPLIER_STOP_WAIT` if it has not: the file stays
    /// locked until it has. What is not yet applied is applied when the
    /// journal is next opened.
    pub(crate) async fn close(&self) {
        drop(
            self.appends
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        drop(self.locked.lock().unwrap_or_else(|e| e.into_inner()).take());
        self.lock().closed = true;
        self.grown.notify_one();
        let ended = self
            .applier_ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(ended) = ended
            && tokio::time::timeout(APPLIER_STOP_WAIT, ended)
                .await
                .is_err()
        {
            tracing::warn!(
                "intake journal closed while its applier waits for the database; \
                 what it has not committed is applied on the next start"
            );
        }
    }

    /// Registers the applier: `close` returns only once what is given here
    /// is dropped, as the applier ends.
    pub(crate) fn applier_started(&self) -> ApplierRunning {
        let (ended, on_end) = oneshot::channel();
        *self.applier_ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(on_end);
        let locked = self.locked.lock().unwrap_or_else(|e| e.into_inner());
        let locked = locked.as_ref().and_then(|f| match f.try_clone() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(),
                    "the intake journal's lock is let go on close, not when its applier ends");
                None
            }
        });
        ApplierRunning {
            _locked: locked,
            _ended: ended,
        }
    }

    /// The synced records after the applied ones, at least one and about
    /// `max_bytes` in all; waits while there are none.
    pub(crate) async fn read(
        self: &Arc<Self>,
        max_bytes: usize,
    ) -> Result<Vec<Record>, JournalError> {
        let (start, end) = loop {
            let (start, end) = {
                let s = self.lock();
                if s.closed {
                    return Err(JournalError::Closed);
                }
                (s.applied_end, s.durable_end)
            };
            if end > start {
                break (start, end);
            }
            self.grown.notified().await;
        };
        let journal = self.clone();
        tokio::task::spawn_blocking(move || journal.read_range(start, end, max_bytes))
            .await
            .map_err(|e| JournalError::Broken(e.to_string()))?
    }

    fn read_range(
        &self,
        start: u64,
        end: u64,
        max_bytes: usize,
    ) -> Result<Vec<Record>, JournalError> {
        let mut file = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let io = io_error(&self.path);
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut reader = BufReader::with_capacity(1 << 20, &mut *file).take(end - start);
        let mut records = Vec::new();
        let mut at = start;
        while at < end && (at - start) < max_bytes as u64 {
            let damaged = || JournalError::Damaged {
                path: self.path.clone(),
                seq: records.last().map_or(0, |r: &Record| r.seq + 1),
            };
            let (seq, payload) = read_record(&mut reader)
                .map_err(|_| damaged())?
                .ok_or_else(damaged)?;
            at += (RECORD_HEAD_LEN + payload.len()) as u64;
            records.push(Record {
                seq,
                payload,
                end: at,
            });
        }
        Ok(records)
    }

    /// Keeps `record`, which will never be applied, in a file of its own
    /// beside the journal, named by the journal and the record, and syncs
    /// it: what was answered 202 stays readable once the journal is cut
    /// back past it. Keeping the same record again finds the same file.
    pub(crate) async fn keep_dropped(&self, record: &Record) -> Result<PathBuf, JournalError> {
        let base = beside(
            &self.path,
            format_args!("dropped-{}-{}", self.id, record.seq),
        );
        let payload = record.payload.clone();
        tokio::task::spawn_blocking(move || keep_beside(&base, &payload))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
            .map_err(io_error(&self.path))
    }

    /// Notes that the records up to `end` are committed to the database.
    pub(crate) fn applied(&self, end: u64) {
        self.lock().applied_end = end;
    }

    /// Notes that the database has synced its commits of the records up
    /// to `end`.
    pub(crate) fn kept(&self, end: u64) {
        self.lock().kept_end = end;
    }

    /// How many bytes of synced records are yet to be committed.
    pub(crate) fn backlog(&self) -> u64 {
        let s = self.lock();
        s.durable_end - s.applied_end
    }
}

/// The writer, on a thread of its own so that a group costs no hand-off
/// beyond the one to it and the answers: takes every append queued so far
/// and writes them as one group. With `JournalSync::BeforeAnswer` it syncs
/// each group, then answers it; with `Within`, it answers once the group
/// is written, and a syncer thread of its own syncs behind it
/// (`sync_behind`), so that no answer waits for a sync.
fn write_groups(
    journal: Arc<Journal>,
    mut file: File,
    mut next_seq: u64,
    queue: std::sync::mpsc::Receiver<Append>,
    sync: JournalSync,
) {
    let syncer = match sync {
        JournalSync::BeforeAnswer => None,
        JournalSync::Within(delay) => match start_syncer(&journal, &file, delay) {
            Ok(syncer) => Some(syncer),
            Err(e) => {
                tracing::error!(error = %e, "intake journal: no syncer; intake is refused");
                journal.lock().broken = Some(format!("no syncer: {e}"));
                None
            }
        },
    };
    while let Ok(first) = queue.recv() {
        let mut bytes = RECORD_HEAD_LEN + first.payload.len();
        let mut group = vec![first];
        while bytes < GROUP_BYTES_MAX {
            match queue.try_recv() {
                Ok(append) => {
                    bytes += RECORD_HEAD_LEN + append.payload.len();
                    group.push(append);
                }
                Err(_) => break,
            }
        }
        let at = match journal.admit(&file, bytes) {
            Ok(at) => at,
            Err(refusal) => {
                refuse(group, &refusal);
                continue;
            }
        };
        let mut out = Vec::with_capacity(bytes);
        let first_seq = next_seq;
        for append in &group {
            encode(next_seq, &append.payload, &mut out);
            next_seq += 1;
        }
        let written = file
            .seek(SeekFrom::Start(at))
            .and_then(|_| file.write_all(&out))
            .and_then(|()| match sync {
                JournalSync::BeforeAnswer => file.sync_data(),
                JournalSync::Within(_) => Ok(()),
            });
        match written {
            Ok(()) => {
                journal.written(out.len() as u64, sync == JournalSync::BeforeAnswer);
                for (n, append) in group.into_iter().enumerate() {
                    let _ = append.reply.send(Ok(first_seq + n as u64));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "intake journal write failed");
                next_seq = first_seq;
                journal.cut_back(&file);
                refuse(group, &io_error(&journal.path)(e));
            }
        }
    }
    journal.lock().writer_done = true;
    journal.changed.notify_all();
    if let Some(syncer) = syncer {
        let _ = syncer.join();
    }
}

/// Answers every append of a group with `refusal`.
fn refuse(group: Vec<Append>, refusal: &JournalError) {
    for append in group {
        let _ = append.reply.send(Err(refusal.clone_for_reply()));
    }
}

fn start_syncer(
    journal: &Arc<Journal>,
    file: &File,
    delay: std::time::Duration,
) -> io::Result<std::thread::JoinHandle<()>> {
    let (journal, file) = (journal.clone(), file.try_clone()?);
    std::thread::Builder::new()
        .name("intake-journal-sync".into())
        .spawn(move || sync_behind(&journal, &file, delay))
}

/// The syncer, with `JournalSync::Within(delay)`: once records are
/// written and not synced, syncs them `delay` later, or at once when the
/// writer wants room or has ended. Only it syncs, so the records it has
/// synced are the ones written when its sync began.
fn sync_behind(journal: &Journal, file: &File, delay: std::time::Duration) {
    let mut s = journal.lock();
    loop {
        while s.written_end == s.durable_end && !s.writer_done && s.broken.is_none() {
            s = wait(&journal.changed, s);
        }
        if s.written_end == s.durable_end {
            return;
        }
        // A writer that has ended, or failed a write, writes no more:
        // what it answered is synced at once.
        let due = Instant::now() + delay;
        while !s.room_wanted && !s.writer_done && s.broken.is_none() {
            let Some(left) = due.checked_duration_since(Instant::now()) else {
                break;
            };
            s = journal
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let target = s.written_end;
        s.room_wanted = false;
        drop(s);
        let synced = file.sync_data();
        s = journal.lock();
        match synced {
            Ok(()) => {
                s.durable_end = target;
                journal.grown.notify_one();
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "intake journal sync failed: requests answered in the last moments are \
                     lost if the machine stops before the kernel writes them; intake is \
                     refused until Kiroku restarts"
                );
                s.broken = Some(e.to_string());
                journal.changed.notify_all();
                return;
            }
        }
        journal.changed.notify_all();
    }
}

fn wait<'a>(
    changed: &std::sync::Condvar,
    s: std::sync::MutexGuard<'a, State>,
) -> std::sync::MutexGuard<'a, State> {
    changed.wait(s).unwrap_or_else(|e| e.into_inner())
}

impl JournalError {
    /// The same refusal for each append of a group.
    fn clone_for_reply(&self) -> JournalError {
        match self {
            JournalError::Backlog(b) => JournalError::Backlog(*b),
            JournalError::Io { path, source } => JournalError::Io {
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            other => JournalError::Broken(other.to_string()),
        }
    }
}

impl Journal {
    /// Refuses a group of `bytes` while the journal is broken or too far
    /// behind. Waits while the records written and not synced, with the
    /// group, would be more than a group, so that what a crash may leave
    /// torn stays within one (`open`). Cuts a drained journal back to its
    /// header first, and lengthens the file when the group does not fit.
    /// Returns where the group is to be written.
    fn admit(&self, file: &File, bytes: usize) -> Result<u64, JournalError> {
        let mut s = self.lock();
        while s.broken.is_none()
            && s.written_end > s.durable_end
            && (s.written_end - s.durable_end) as usize + bytes > GROUP_BYTES_MAX
        {
            s.room_wanted = true;
            self.changed.notify_all();
            s = wait(&self.changed, s);
        }
        s.room_wanted = false;
        if let Some(why) = &s.broken {
            return Err(JournalError::Broken(why.clone()));
        }
        let backlog = s.durable_end - s.applied_end;
        if backlog > BACKLOG_MAX {
            return Err(JournalError::Backlog(backlog));
        }
        if s.written_end == s.durable_end
            && s.kept_end == s.durable_end
            && s.durable_end >= TRUNCATE_AT
        {
            // Everything written is synced (so no sync is under way),
            // applied and kept, and only this thread adds records; neither
            // the applier nor the syncer acts while the lock is held.
            // Once cut, the file is the header alone: a sync that fails
            // then leaves it unknown what a crash would bring back, so the
            // journal takes no more.
            match file.set_len(HEADER_LEN) {
                Ok(()) => {
                    s.written_end = HEADER_LEN;
                    s.room_end = HEADER_LEN;
                    s.durable_end = HEADER_LEN;
                    s.applied_end = HEADER_LEN;
                    s.kept_end = HEADER_LEN;
                    if let Err(e) = file.sync_data() {
                        s.broken = Some(format!("cut back, not synced: {e}"));
                        return Err(JournalError::Broken(e.to_string()));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "intake journal not cut back"),
            }
        }
        let needed = s.written_end + bytes as u64;
        if needed > s.room_end {
            // Recorded by the group's own sync.
            let len = needed + ROOM_AHEAD;
            file.set_len(len).map_err(io_error(&self.path))?;
            s.room_end = len;
        }
        Ok(s.written_end)
    }

    /// Notes a group of `len` bytes written, and synced if `synced`.
    fn written(&self, len: u64, synced: bool) {
        let mut s = self.lock();
        let was_synced = s.written_end == s.durable_end;
        s.written_end += len;
        if synced {
            s.durable_end = s.written_end;
            self.grown.notify_one();
        } else if was_synced {
            // The syncer waits for the first unsynced group only: a
            // wake-up for every group would cost each one a thread switch.
            self.changed.notify_all();
        }
    }

    /// After a failed group: cuts off whatever of it reached the file, so
    /// that nothing but zeros follows the last group written. If that
    /// fails too, no more appends are taken.
    fn cut_back(&self, file: &File) {
        let mut s = self.lock();
        s.room_end = s.written_end;
        if let Err(e) = file.set_len(s.written_end).and_then(|()| file.sync_data()) {
            s.broken = Some(e.to_string());
            self.changed.notify_all();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal's path in a fresh directory, removed with it.
    fn scratch() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intake.journal");
        (dir, path)
    }

    /// A new journal's file, closed, and its bytes: the header alone.
    fn new_file() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let (dir, path) = scratch();
        drop(JournalFile::open(&path).unwrap());
        let bytes = std::fs::read(&path).unwrap();
        (dir, path, bytes)
    }

    /// A journal started at `path`, new or not, syncing before it answers.
    fn new_journal(path: &Path) -> Arc<Journal> {
        JournalFile::open(path)
            .unwrap()
            .start(0, JournalSync::BeforeAnswer)
            .unwrap()
    }

    #[tokio::test]
    async fn a_dropped_record_is_kept_beside_the_journal_for_its_owner_alone() {
        let (_dir, path) = scratch();
        let journal = new_journal(&path);
        let record = Record {
            seq: 7,
            payload: br#"{"events": []}"#.to_vec(),
            end: 0,
        };
        let kept = journal.keep_dropped(&record).await.unwrap();
        assert_eq!(kept.parent(), path.parent());
        assert!(
            kept.to_string_lossy()
                .ends_with(&format!("-{}-7", journal.id()))
        );
        assert_eq!(std::fs::read(&kept).unwrap(), record.payload);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Kept again after a crash before its drop was committed: the same
        // file, whole.
        assert_eq!(journal.keep_dropped(&record).await.unwrap(), kept);
        assert_eq!(std::fs::read(&kept).unwrap(), record.payload);
        // The number again with other bytes (the database restored from a
        // backup): a file of its own, the first untouched.
        let other = Record {
            payload: br#"{"events": [1]}"#.to_vec(),
            ..record
        };
        let beside = journal.keep_dropped(&other).await.unwrap();
        assert_eq!(
            beside,
            path.with_file_name(format!("{}-2", kept.file_name().unwrap().display()))
        );
        assert_eq!(std::fs::read(&beside).unwrap(), other.payload);
        assert_eq!(std::fs::read(&kept).unwrap(), br#"{"events": []}"#);
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    async fn read_all(journal: &Arc<Journal>) -> Vec<(u64, Vec<u8>)> {
        let records = journal.read(usize::MAX).await.unwrap();
        if let Some(last) = records.last() {
            journal.applied(last.end);
            journal.kept(last.end);
        }
        records.into_iter().map(|r| (r.seq, r.payload)).collect()
    }

    #[tokio::test]
    async fn concurrent_appends_are_numbered_once_and_read_back_in_order() {
        let (_dir, path) = scratch();
        let journal = new_journal(&path);
        let appends: Vec<_> = (0..50u8)
            .map(|n| {
                let journal = journal.clone();
                tokio::spawn(async move { (journal.append(vec![n; n as usize]).await.unwrap(), n) })
            })
            .collect();
        let mut numbered = Vec::new();
        for a in appends {
            numbered.push(a.await.unwrap());
        }
        numbered.sort();
        assert_eq!(
            numbered.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            (1..=50).collect::<Vec<_>>()
        );
        let read = read_all(&journal).await;
        let expected: Vec<(u64, Vec<u8>)> = numbered
            .iter()
            .map(|(seq, n)| (*seq, vec![*n; *n as usize]))
            .collect();
        assert_eq!(read, expected);
        assert_eq!(journal.backlog(), 0);
    }

    /// Answered once written: the file holds the record at once, the
    /// applier sees it once synced, no later than the interval after, or
    /// sooner when what is unsynced would outgrow a group.
    #[tokio::test]
    async fn appends_answered_before_their_sync_are_synced_within_the_interval() {
        let (_dir, path) = scratch();
        let sync = JournalSync::Within(std::time::Duration::from_millis(500));
        let journal = JournalFile::open(&path).unwrap().start(0, sync).unwrap();
        let started = Instant::now();
        assert_eq!(journal.append(b"one".to_vec()).await.unwrap(), 1);
        let mut one = Vec::new();
        encode(1, b"one", &mut one);
        let file = std::fs::read(&path).unwrap();
        assert_eq!(
            &file[HEADER_LEN as usize..][..one.len()],
            one,
            "not written"
        );
        assert_eq!(journal.lock().durable_end, HEADER_LEN, "synced already");
        assert_eq!(read_all(&journal).await, vec![(1, b"one".to_vec())]);
        assert!(started.elapsed() >= std::time::Duration::from_millis(400));

        let (_dir, path) = scratch();
        let sync = JournalSync::Within(std::time::Duration::from_secs(60));
        let journal = JournalFile::open(&path).unwrap().start(0, sync).unwrap();
        let large = vec![7u8; GROUP_BYTES_MAX / 2 + 1];
        journal.append(large.clone()).await.unwrap();
        journal.append(large.clone()).await.unwrap();
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), read_all(&journal))
            .await
            .expect("more than a group left unsynced");
        assert_eq!(read, vec![(1, large)]);
        // Closing syncs what is left, without waiting out the interval.
        let started = Instant::now();
        journal.close().await;
        let s = journal.lock();
        assert_eq!(s.durable_end, s.written_end);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_reopened_journal_keeps_its_id_records_and_numbering_and_loses_its_torn_tail() {
        let (_dir, path) = scratch();
        let first = JournalFile::open(&path).unwrap();
        let id = first.id();
        let journal = first.start(0, JournalSync::BeforeAnswer).unwrap();
        journal.append(b"one".to_vec()).await.unwrap();
        journal.append(b"two".to_vec()).await.unwrap();
        let whole = journal.lock().written_end;
        journal.close().await;
        assert!(matches!(
            journal.append(Vec::new()).await,
            Err(JournalError::Closed)
        ));
        let room = std::fs::metadata(&path).unwrap().len();
        assert!(room > whole + GROUP_BYTES_MAX as u64, "no room made ahead");
        // A group a crash cut short, in the room after the records: half
        // of a record's bytes, and a page further on that reached the disk
        // before the one between.
        let mut torn = Vec::new();
        encode(3, b"three, never answered", &mut torn);
        torn.truncate(torn.len() / 2);
        let mut file = OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(SeekFrom::Start(whole)).unwrap();
        file.write_all(&torn).unwrap();
        file.seek(SeekFrom::Start(whole + 8192)).unwrap();
        file.write_all(&torn).unwrap();
        drop(file);

        let again = JournalFile::open(&path).unwrap();
        assert_eq!(again.id(), id);
        assert_eq!((again.end, again.last_seq), (whole, 2));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            whole,
            "torn tail cut off"
        );
        let aside = std::fs::read(kept_aside(&path).expect("torn bytes not kept")).unwrap();
        assert_eq!(aside.len(), 8192 + torn.len());
        assert_eq!(
            (&aside[..torn.len()], &aside[8192..]),
            (&torn[..], &torn[..])
        );
        let journal = again.start(1, JournalSync::BeforeAnswer).unwrap();
        assert_eq!(journal.append(b"three".to_vec()).await.unwrap(), 3);
        assert_eq!(
            read_all(&journal).await,
            vec![
                (1, b"one".to_vec()),
                (2, b"two".to_vec()),
                (3, b"three".to_vec())
            ]
        );
    }

    #[tokio::test]
    async fn a_drained_journal_is_cut_back_and_numbering_carries_on_past_what_was_applied() {
        let (_dir, path) = scratch();
        let journal = new_journal(&path);
        let big = vec![7u8; (TRUNCATE_AT / 2) as usize];
        for _ in 0..2 {
            journal.append(big.clone()).await.unwrap();
        }
        assert_eq!(read_all(&journal).await.len(), 2);
        // The next group finds everything applied and the file long.
        assert_eq!(journal.append(b"after".to_vec()).await.unwrap(), 3);
        let len = std::fs::metadata(&path).unwrap().len();
        let after = HEADER_LEN + (RECORD_HEAD_LEN + 5) as u64;
        assert_eq!(len, after + ROOM_AHEAD, "not cut back before the room made");
        assert_eq!(read_all(&journal).await, vec![(3, b"after".to_vec())]);

        // Cut back once more, then reopened: only the database knows the
        // number reached, and the journal starts after it.
        for _ in 0..2 {
            journal.append(big.clone()).await.unwrap();
        }
        read_all(&journal).await;
        journal.append(Vec::new()).await.unwrap();
        read_all(&journal).await;
        journal.close().await;
        let reopened = JournalFile::open(&path).unwrap();
        assert_eq!(reopened.last_seq, 6);
        let journal = reopened.start(6, JournalSync::BeforeAnswer).unwrap();
        assert_eq!(journal.append(b"next".to_vec()).await.unwrap(), 7);
    }

    /// The one file kept aside beside the journal at `path`, if any.
    fn kept_aside(path: &Path) -> Option<PathBuf> {
        let mut aside: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".torn-"))
            .collect();
        assert!(aside.len() <= 1, "{aside:?}");
        aside.pop()
    }

    #[tokio::test]
    async fn small_appends_fill_the_room_made_ahead_and_a_clean_reopen_keeps_it() {
        let (_dir, path) = scratch();
        let journal = new_journal(&path);
        journal.append(b"one".to_vec()).await.unwrap();
        let room = std::fs::metadata(&path).unwrap().len();
        for n in 2..=100u8 {
            journal.append(vec![n; 600]).await.unwrap();
        }
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            room,
            "lengthened again"
        );
        journal.close().await;

        let reopened = JournalFile::open(&path).unwrap();
        assert_eq!(reopened.last_seq, 100);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), room, "room cut");
        assert_eq!(kept_aside(&path), None);
        let journal = reopened.start(0, JournalSync::BeforeAnswer).unwrap();
        assert_eq!(journal.append(b"next".to_vec()).await.unwrap(), 101);
        let read = read_all(&journal).await;
        assert_eq!(read.len(), 101);
        assert_eq!(read[0], (1, b"one".to_vec()));
        assert_eq!(read[100], (101, b"next".to_vec()));
    }

    #[test]
    fn bytes_in_the_room_further_on_than_a_group_refuse_the_start_untouched() {
        let (_dir, path) = scratch();
        drop(JournalFile::open(&path).unwrap());
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        let mut records = Vec::new();
        encode(1, b"kept", &mut records);
        file.write_all(&records).unwrap();
        let end = HEADER_LEN + records.len() as u64;
        file.set_len(end + TORN_MAX + 4096).unwrap();
        drop(file);
        let stray = |at: u64| {
            let mut file = OpenOptions::new().write(true).open(&path).unwrap();
            file.seek(SeekFrom::Start(at)).unwrap();
            file.write_all(&[1]).unwrap();
        };
        stray(end + TORN_MAX);
        let bytes = std::fs::read(&path).unwrap();
        assert!(matches!(
            JournalFile::open(&path),
            Err(JournalError::DamagedMidway { seq: 2, .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(kept_aside(&path), None);

        // Within a group's reach it is a torn group's.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(end).unwrap();
        file.set_len(end + TORN_MAX + 4096).unwrap();
        drop(file);
        stray(end + TORN_MAX - 1);
        let reopened = JournalFile::open(&path).unwrap();
        assert_eq!((reopened.end, reopened.last_seq), (end, 1));
        let aside = kept_aside(&path).unwrap();
        assert_eq!(std::fs::metadata(aside).unwrap().len(), TORN_MAX);
    }

    #[test]
    fn a_record_out_of_numbering_ends_the_journal() {
        let (_dir, path, mut bytes) = new_file();
        encode(1, b"one", &mut bytes);
        encode(2, b"two", &mut bytes);
        let end = bytes.len() as u64;
        // Whole and checksummed, but from some earlier use of the block.
        encode(7, b"stale", &mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let reopened = JournalFile::open(&path).unwrap();
        assert_eq!((reopened.end, reopened.last_seq), (end, 2));
        assert!(kept_aside(&path).is_some());
    }

    #[tokio::test]
    async fn a_request_too_long_to_read_back_is_refused() {
        let (_dir, path) = scratch();
        let journal = new_journal(&path);
        assert!(matches!(
            journal.append(vec![0; RECORD_MAX + 1]).await,
            Err(JournalError::TooLarge(_))
        ));
        assert_eq!(journal.append(b"next".to_vec()).await.unwrap(), 1);
    }

    /// Closing gives up waiting for an applier after a while; until it
    /// ends, nobody else may open the journal and apply its records too.
    #[tokio::test]
    async fn a_closed_journal_stays_locked_while_its_applier_runs() {
        let (_dir, path) = scratch();
        let journal = JournalFile::open(&path)
            .unwrap()
            .start(0, JournalSync::BeforeAnswer)
            .unwrap();
        let applier = journal.applier_started();
        let closing = tokio::spawn({
            let journal = journal.clone();
            async move { journal.close().await }
        });
        while !journal.lock().closed {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // The writer has let go of the file, and the journal its own hold.
        assert!(journal.writer.lock().unwrap().is_none());
        assert!(journal.locked.lock().unwrap().is_none());
        assert!(matches!(
            JournalFile::open(&path),
            Err(JournalError::InUse(_))
        ));
        drop(applier);
        closing.await.unwrap();
        JournalFile::open(&path).unwrap();
    }

    #[test]
    fn a_journal_in_use_is_refused() {
        let (_dir, path) = scratch();
        let open = JournalFile::open(&path).unwrap();
        assert!(matches!(
            JournalFile::open(&path),
            Err(JournalError::InUse(_))
        ));
        drop(open);
        JournalFile::open(&path).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_journal_is_refused_untouched() {
        let (_dir, path) = scratch();
        let text = b"SQLite format 3\0 and a good deal more than a header";
        std::fs::write(&path, text).unwrap();
        assert!(matches!(
            JournalFile::open(&path),
            Err(JournalError::Foreign(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), text);
    }

    #[test]
    fn damage_further_back_than_a_torn_group_is_refused_untouched() {
        let (_dir, path, mut bytes) = new_file();
        let damaged_at = bytes.len();
        let big = vec![1u8; 1 << 20];
        for seq in 1..=80 {
            encode(seq, &big, &mut bytes);
        }
        bytes[damaged_at + RECORD_HEAD_LEN] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            JournalFile::open(&path),
            Err(JournalError::DamagedMidway { seq: 1, .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_damaged_record_in_the_last_group_ends_the_journal() {
        let (_dir, path, mut bytes) = new_file();
        encode(1, b"kept", &mut bytes);
        let damaged_at = bytes.len();
        encode(2, b"flipped", &mut bytes);
        encode(3, b"after it", &mut bytes);
        bytes[damaged_at + RECORD_HEAD_LEN] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let reopened = JournalFile::open(&path).unwrap();
        assert_eq!((reopened.end, reopened.last_seq), (damaged_at as u64, 1));
    }
}
