//! A VFS over the platform's default that writes each commit's log frames
//! in one system call. SQLite writes every frame of its write-ahead log as
//! two writes, a 24-byte header and the page: an intake commit dirties
//! about 25 pages, so 50 `pwrite`s, which measured a third of SQLite's
//! thread. No crate offers this, and SQLite has no setting for it.
//!
//! Only the log file is wrapped. Its writes collect while they follow each
//! other and go out in one write as soon as the commit frame's page is
//! written, inside that `xWrite`, so a failure (a full disk) fails the
//! commit as it would without buffering. Every other call on the log
//! writes out what is held first, so the file never disagrees with what
//! SQLite believes it wrote. A reader looks only at frames up to the last
//! commit, which are always written out.

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

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

/// A log file: SQLite's own file follows this header in the same memory.
#[repr(C)]
struct LogFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    held: Vec<u8>,
    /// Where `held` goes in the file.
    at: i64,
    /// The last frame header held was a commit's: its page ends the commit.
    commit_page_next: bool,
}

/// Where SQLite's own file begins: past the header, 8-byte aligned.
fn inner_offset() -> usize {
    std::mem::size_of::<LogFile>().next_multiple_of(8)
}

/// Registered for the life of the process: SQLite keeps the pointer.
static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();

/// Registers the VFS, once per process; an error names SQLite's code.
pub(crate) fn register() -> Result<(), String> {
    let registered = REGISTERED.get_or_init(|| unsafe {
        let default = ffi::sqlite3_vfs_find(std::ptr::null());
        if default.is_null() {
            return Err(ffi::SQLITE_ERROR);
        }
        let mut vfs = *default;
        vfs.zName = NAME_C.as_ptr();
        vfs.pNext = std::ptr::null_mut();
        vfs.szOsFile = (inner_offset() + (*default).szOsFile as usize) as c_int;
        vfs.xOpen = Some(open);
        match ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0) {
            ffi::SQLITE_OK => Ok(()),
            rc => Err(rc),
        }
    });
    (*registered).map_err(|rc| format!("registering SQLite's VFS failed with code {rc}"))
}

/// The default VFS, which does the work.
fn default_vfs() -> *mut ffi::sqlite3_vfs {
    unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    unsafe {
        let default = default_vfs();
        let Some(default_open) = (*default).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Not the log: the file is SQLite's own, unwrapped.
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
        std::ptr::write(
            file.cast::<LogFile>(),
            LogFile {
                base: ffi::sqlite3_file {
                    pMethods: &LOG_METHODS,
                },
                inner,
                held: Vec::new(),
                at: 0,
                commit_page_next: false,
            },
        );
        ffi::SQLITE_OK
    }
}

/// # Safety
/// `file` was opened by [`open`] as a log file.
unsafe fn log<'a>(file: *mut ffi::sqlite3_file) -> &'a mut LogFile {
    unsafe { &mut *file.cast::<LogFile>() }
}

impl LogFile {
    fn inner_methods(&self) -> &ffi::sqlite3_io_methods {
        unsafe { &*(*self.inner).pMethods }
    }

    /// Writes out what is held.
    fn write_out(&mut self) -> c_int {
        let Some(write) = self.inner_methods().xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let mut rc = ffi::SQLITE_OK;
        let mut at = self.at;
        for piece in self.held.chunks(WRITE_MAX) {
            rc = unsafe { write(self.inner, piece.as_ptr().cast(), piece.len() as c_int, at) };
            if rc != ffi::SQLITE_OK {
                break;
            }
            at += piece.len() as i64;
        }
        self.held.clear();
        if self.held.capacity() > HELD_MAX * 2 {
            self.held.shrink_to(HELD_MAX);
        }
        rc
    }
}

unsafe extern "C" fn log_close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let f = log(file);
        let written = f.write_out();
        let closed = match f.inner_methods().xClose {
            Some(close) => close(f.inner),
            None => ffi::SQLITE_OK,
        };
        std::ptr::drop_in_place(file.cast::<LogFile>());
        if written != ffi::SQLITE_OK {
            written
        } else {
            closed
        }
    }
}

unsafe extern "C" fn log_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    unsafe {
        let f = log(file);
        if !f.held.is_empty() && offset != f.at + f.held.len() as i64 {
            let rc = f.write_out();
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if f.held.is_empty() {
            f.at = offset;
        }
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), amount.max(0) as usize);
        f.held.extend_from_slice(bytes);
        if bytes.len() == FRAME_HEADER {
            // Bytes 4..8 of a frame header: the database's size in pages
            // after a commit, zero in every other frame.
            f.commit_page_next = bytes[4..8] != [0; 4];
            return ffi::SQLITE_OK;
        }
        if std::mem::take(&mut f.commit_page_next) || f.held.len() >= HELD_MAX {
            return f.write_out();
        }
        ffi::SQLITE_OK
    }
}

/// Defines a log method that writes out what is held, then passes the call
/// to SQLite's own file.
macro_rules! after_writing_out {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            unsafe {
                let f = log(file);
                let rc = f.write_out();
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                match f.inner_methods().$method {
                    Some(method) => method(f.inner, $($arg),*),
                    None => ffi::SQLITE_OK,
                }
            }
        }
    };
}

after_writing_out!(log_read, xRead, (data: *mut c_void, amount: c_int, offset: i64));
after_writing_out!(log_truncate, xTruncate, (size: i64));
after_writing_out!(log_sync, xSync, (flags: c_int));
after_writing_out!(log_file_size, xFileSize, (size: *mut i64));
after_writing_out!(log_lock, xLock, (level: c_int));
after_writing_out!(log_unlock, xUnlock, (level: c_int));
after_writing_out!(log_check_reserved_lock, xCheckReservedLock, (out: *mut c_int));
after_writing_out!(log_file_control, xFileControl, (op: c_int, arg: *mut c_void));

unsafe extern "C" fn log_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let f = log(file);
        f.inner_methods().xSectorSize.map_or(0, |m| m(f.inner))
    }
}

unsafe extern "C" fn log_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let f = log(file);
        f.inner_methods()
            .xDeviceCharacteristics
            .map_or(0, |m| m(f.inner))
    }
}

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
