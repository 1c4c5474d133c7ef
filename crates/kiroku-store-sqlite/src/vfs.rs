//! A VFS over the platform's default that writes a commit's log frames
//! together. SQLite writes every frame of its write-ahead log as two
//! writes, a 24-byte header and the page: an intake commit dirties about 27
//! pages, so 54 `pwrite`s, which measured a third of SQLite's thread. Here
//! they go out in 64 KiB pieces. No crate offers this, and SQLite has no
//! setting for it.
//!
//! The log file's appends are held while they follow each other and go out
//! inside the `xWrite` of the commit frame's page, so the commit is in the
//! file before SQLite publishes it to readers, and a failure (a full disk)
//! fails the commit as it would without holding. Past 1 MiB, or before any
//! other call on the log, what is held goes out too; that only happens
//! while the write lock is held. Bytes already in the file that SQLite
//! writes again (a page written twice in one transaction, checksums
//! rewritten after the commit frame) go straight through.
//!
//! What is still held when the connection lets go of the write lock
//! belongs to a transaction that did not commit, and is dropped: written
//! later, it could land on frames another process has committed since. To
//! see that moment the database file is wrapped too, and its log is found
//! by the database name SQLite hands both (`sqlite3_filename_database`).

use std::collections::BTreeMap;
use std::ffi::{CStr, c_int, c_void};
use std::sync::{Mutex, OnceLock};

use rusqlite::ffi;

/// The name connections ask for (`?vfs=` in the URL).
pub(crate) const NAME: &str = "kiroku";
const NAME_C: &CStr = c"kiroku";

/// Bytes held before they are written out regardless: a large append
/// writes out as it goes rather than holding its whole log in memory.
const HELD_MAX: usize = 1 << 20;

/// The most one write to SQLite's own file may carry: the default VFS
/// takes at most 128 KiB − 1 bytes per call.
const WRITE_MAX: usize = 64 << 10;

/// The bytes of a frame header, the only write of this size to the log.
const FRAME_HEADER: usize = 24;

/// SQLite's lock index for the log's one writer (`WAL_WRITE_LOCK`).
const WAL_WRITE_LOCK: c_int = 0;

/// A database file: SQLite's own file follows the header in the same
/// memory.
#[repr(C)]
struct DbFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    /// Its name as SQLite handed it, which its log's name leads back to.
    name: usize,
    /// Its open log, if any.
    log: *mut LogFile,
}

/// A log file, laid out as [`DbFile`].
#[repr(C)]
struct LogFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    db: *mut DbFile,
    held: Vec<u8>,
    /// Where `held` goes in the file.
    at: i64,
    /// The end of what this log has been given since its header was last
    /// written: a write below it rewrites bytes already out.
    end: i64,
    /// The last frame header held was a commit's: its page ends the commit.
    commit_page_next: bool,
}

/// Where SQLite's own file begins: past the larger header, 8-byte aligned.
fn inner_offset() -> usize {
    std::mem::size_of::<DbFile>()
        .max(std::mem::size_of::<LogFile>())
        .next_multiple_of(8)
}

/// The default VFS, which does the work.
struct Default(*mut ffi::sqlite3_vfs);
// Written once, before registration; SQLite's VFS objects live for good.
unsafe impl Send for Default {}
unsafe impl Sync for Default {}

static DEFAULT: OnceLock<Result<Default, c_int>> = OnceLock::new();

/// Open database files by the address of their name.
static DATABASES: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());

fn databases<T>(f: impl FnOnce(&mut BTreeMap<usize, usize>) -> T) -> T {
    f(&mut DATABASES.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Registers the VFS, once per process; an error names SQLite's code.
pub(crate) fn register() -> Result<(), String> {
    let registered = DEFAULT.get_or_init(|| unsafe {
        let default = ffi::sqlite3_vfs_find(std::ptr::null());
        if default.is_null() {
            return Err(ffi::SQLITE_ERROR);
        }
        let mut vfs = *default;
        vfs.zName = NAME_C.as_ptr();
        vfs.pNext = std::ptr::null_mut();
        vfs.szOsFile = (inner_offset() + (*default).szOsFile as usize) as c_int;
        vfs.xOpen = Some(open);
        // SQLite keeps the pointer for the life of the process.
        match ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0) {
            ffi::SQLITE_OK => Ok(Default(default)),
            rc => Err(rc),
        }
    });
    registered
        .as_ref()
        .map(drop)
        .map_err(|rc| format!("registering SQLite's VFS failed with code {rc}"))
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    unsafe {
        let Some(Ok(Default(default))) = DEFAULT.get() else {
            return ffi::SQLITE_ERROR;
        };
        let default = *default;
        let Some(default_open) = (*default).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        let is_db = flags & ffi::SQLITE_OPEN_MAIN_DB != 0 && !name.is_null();
        let db = if flags & ffi::SQLITE_OPEN_WAL != 0 && !name.is_null() {
            let db_name = ffi::sqlite3_filename_database(name) as usize;
            databases(|map| map.get(&db_name).copied())
        } else {
            None
        };
        if !is_db && db.is_none() {
            // Neither a database nor the log of one we know: SQLite's own.
            return default_open(default, name, file, flags, out_flags);
        }
        let inner = file
            .cast::<u8>()
            .add(inner_offset())
            .cast::<ffi::sqlite3_file>();
        let rc = default_open(default, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            (*file).pMethods = std::ptr::null();
            return rc;
        }
        match db {
            None => {
                std::ptr::write(
                    file.cast::<DbFile>(),
                    DbFile {
                        base: ffi::sqlite3_file {
                            pMethods: &DB_METHODS,
                        },
                        inner,
                        name: name as usize,
                        log: std::ptr::null_mut(),
                    },
                );
                databases(|map| map.insert(name as usize, file as usize));
            }
            Some(db) => {
                let db = db as *mut DbFile;
                std::ptr::write(
                    file.cast::<LogFile>(),
                    LogFile {
                        base: ffi::sqlite3_file {
                            pMethods: &LOG_METHODS,
                        },
                        inner,
                        db,
                        held: Vec::new(),
                        at: 0,
                        end: 0,
                        commit_page_next: false,
                    },
                );
                (*db).log = file.cast::<LogFile>();
            }
        }
        ffi::SQLITE_OK
    }
}

/// # Safety
/// `file` was opened by [`open`] as a log file.
unsafe fn log<'a>(file: *mut ffi::sqlite3_file) -> &'a mut LogFile {
    unsafe { &mut *file.cast::<LogFile>() }
}

/// # Safety
/// `file` was opened by [`open`] as a database file.
unsafe fn db<'a>(file: *mut ffi::sqlite3_file) -> &'a mut DbFile {
    unsafe { &mut *file.cast::<DbFile>() }
}

/// SQLite's own methods for a wrapped file.
fn methods<'a>(inner: *mut ffi::sqlite3_file) -> &'a ffi::sqlite3_io_methods {
    unsafe { &*(*inner).pMethods }
}

impl LogFile {
    /// Writes `bytes` at `at` to SQLite's own file, in pieces it takes.
    fn write_through(&self, bytes: &[u8], mut at: i64) -> c_int {
        let Some(write) = methods(self.inner).xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        for piece in bytes.chunks(WRITE_MAX) {
            let rc = unsafe { write(self.inner, piece.as_ptr().cast(), piece.len() as c_int, at) };
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            at += piece.len() as i64;
        }
        ffi::SQLITE_OK
    }

    /// Writes out what is held.
    fn write_out(&mut self) -> c_int {
        let rc = self.write_through(&self.held, self.at);
        self.drop_held();
        rc
    }

    fn drop_held(&mut self) {
        self.held.clear();
        self.commit_page_next = false;
        if self.held.capacity() > HELD_MAX * 2 {
            self.held.shrink_to(HELD_MAX);
        }
    }

    fn write(&mut self, bytes: &[u8], offset: i64) -> c_int {
        let follows = !self.held.is_empty() && offset == self.at + self.held.len() as i64;
        if !follows {
            let rc = self.write_out();
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            if offset == 0 {
                // The log's header: the log starts over.
                self.end = 0;
            }
            if offset < self.end {
                return self.write_through(bytes, offset);
            }
            self.at = offset;
        }
        self.held.extend_from_slice(bytes);
        self.end = self.end.max(offset + bytes.len() as i64);
        if bytes.len() == FRAME_HEADER {
            // Bytes 4..8 of a frame header: the database's size in pages
            // after a commit, zero in every other frame.
            self.commit_page_next = bytes[4..8] != [0; 4];
            return ffi::SQLITE_OK;
        }
        if std::mem::take(&mut self.commit_page_next) || self.held.len() >= HELD_MAX {
            return self.write_out();
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn log_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    unsafe {
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), amount.max(0) as usize);
        log(file).write(bytes, offset)
    }
}

unsafe extern "C" fn log_close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let f = log(file);
        // Closed outside any write transaction: nothing held committed.
        f.drop_held();
        if !f.db.is_null() {
            (*f.db).log = std::ptr::null_mut();
        }
        let rc = methods(f.inner)
            .xClose
            .map_or(ffi::SQLITE_OK, |close| close(f.inner));
        std::ptr::drop_in_place(file.cast::<LogFile>());
        rc
    }
}

/// Defines a log method that writes out what is held, then passes the call
/// to SQLite's own file.
macro_rules! log_after_writing_out {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            unsafe {
                let f = log(file);
                let rc = f.write_out();
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                match methods(f.inner).$method {
                    Some(method) => method(f.inner, $($arg),*),
                    None => ffi::SQLITE_IOERR,
                }
            }
        }
    };
}

log_after_writing_out!(log_read, xRead, (data: *mut c_void, amount: c_int, offset: i64));
log_after_writing_out!(log_truncate, xTruncate, (size: i64));
log_after_writing_out!(log_sync, xSync, (flags: c_int));
log_after_writing_out!(log_file_size, xFileSize, (size: *mut i64));
log_after_writing_out!(log_lock, xLock, (level: c_int));
log_after_writing_out!(log_unlock, xUnlock, (level: c_int));
log_after_writing_out!(log_check_reserved_lock, xCheckReservedLock, (out: *mut c_int));
log_after_writing_out!(log_file_control, xFileControl, (op: c_int, arg: *mut c_void));

/// Defines a method that passes the call to SQLite's own file.
macro_rules! passed_on {
    ($name:ident, $file:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> $ret {
            unsafe {
                let inner = $file(file).inner;
                match methods(inner).$method {
                    Some(method) => method(inner, $($arg),*),
                    None => $missing,
                }
            }
        }
    };
}

passed_on!(log_sector_size, log, xSectorSize, () -> c_int, 0);
passed_on!(log_device_characteristics, log, xDeviceCharacteristics, () -> c_int, 0);

/// Version 1: the log is neither shared memory nor memory-mapped; SQLite
/// asks those of the database file only.
static LOG_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(log_close),
    xRead: Some(log_read),
    xWrite: Some(log_write),
    xTruncate: Some(log_truncate),
    xSync: Some(log_sync),
    xFileSize: Some(log_file_size),
    xLock: Some(log_lock),
    xUnlock: Some(log_unlock),
    xCheckReservedLock: Some(log_check_reserved_lock),
    xFileControl: Some(log_file_control),
    xSectorSize: Some(log_sector_size),
    xDeviceCharacteristics: Some(log_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn db_close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let f = db(file);
        databases(|map| {
            if map.get(&f.name) == Some(&(file as usize)) {
                map.remove(&f.name);
            }
        });
        if !f.log.is_null() {
            (*f.log).db = std::ptr::null_mut();
        }
        methods(f.inner)
            .xClose
            .map_or(ffi::SQLITE_OK, |close| close(f.inner))
    }
}

/// Locks of the log's shared memory go through the database file: letting
/// go of the write lock ends the connection's write transaction.
unsafe extern "C" fn db_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    unsafe {
        let f = db(file);
        let releases_writer = flags & ffi::SQLITE_SHM_UNLOCK != 0
            && flags & ffi::SQLITE_SHM_EXCLUSIVE != 0
            && offset <= WAL_WRITE_LOCK
            && WAL_WRITE_LOCK < offset + n;
        if releases_writer && !f.log.is_null() {
            // What did not go out with a commit did not commit.
            (*f.log).drop_held();
        }
        match methods(f.inner).xShmLock {
            Some(lock) => lock(f.inner, offset, n, flags),
            None => ffi::SQLITE_IOERR,
        }
    }
}

unsafe extern "C" fn db_shm_barrier(file: *mut ffi::sqlite3_file) {
    unsafe {
        let inner = db(file).inner;
        if let Some(barrier) = methods(inner).xShmBarrier {
            barrier(inner);
        }
    }
}

passed_on!(db_read, db, xRead, (data: *mut c_void, amount: c_int, offset: i64) -> c_int, ffi::SQLITE_IOERR);
passed_on!(db_write, db, xWrite, (data: *const c_void, amount: c_int, offset: i64) -> c_int, ffi::SQLITE_IOERR);
passed_on!(db_truncate, db, xTruncate, (size: i64) -> c_int, ffi::SQLITE_IOERR);
passed_on!(db_sync, db, xSync, (flags: c_int) -> c_int, ffi::SQLITE_IOERR);
passed_on!(db_file_size, db, xFileSize, (size: *mut i64) -> c_int, ffi::SQLITE_IOERR);
passed_on!(db_lock, db, xLock, (level: c_int) -> c_int, ffi::SQLITE_IOERR);
passed_on!(db_unlock, db, xUnlock, (level: c_int) -> c_int, ffi::SQLITE_IOERR);
passed_on!(db_check_reserved_lock, db, xCheckReservedLock, (out: *mut c_int) -> c_int, ffi::SQLITE_IOERR);
passed_on!(db_file_control, db, xFileControl, (op: c_int, arg: *mut c_void) -> c_int, ffi::SQLITE_NOTFOUND);
passed_on!(db_sector_size, db, xSectorSize, () -> c_int, 0);
passed_on!(db_device_characteristics, db, xDeviceCharacteristics, () -> c_int, 0);
passed_on!(db_shm_map, db, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int, ffi::SQLITE_IOERR);
passed_on!(db_shm_unmap, db, xShmUnmap, (delete: c_int) -> c_int, ffi::SQLITE_IOERR);
passed_on!(db_fetch, db, xFetch, (offset: i64, amount: c_int, out: *mut *mut c_void) -> c_int, {
    *out = std::ptr::null_mut();
    ffi::SQLITE_OK
});
passed_on!(db_unfetch, db, xUnfetch, (offset: i64, page: *mut c_void) -> c_int, ffi::SQLITE_OK);

static DB_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(db_close),
    xRead: Some(db_read),
    xWrite: Some(db_write),
    xTruncate: Some(db_truncate),
    xSync: Some(db_sync),
    xFileSize: Some(db_file_size),
    xLock: Some(db_lock),
    xUnlock: Some(db_unlock),
    xCheckReservedLock: Some(db_check_reserved_lock),
    xFileControl: Some(db_file_control),
    xSectorSize: Some(db_sector_size),
    xDeviceCharacteristics: Some(db_device_characteristics),
    xShmMap: Some(db_shm_map),
    xShmLock: Some(db_shm_lock),
    xShmBarrier: Some(db_shm_barrier),
    xShmUnmap: Some(db_shm_unmap),
    xFetch: Some(db_fetch),
    xUnfetch: Some(db_unfetch),
};
