//! A SQLite VFS for the writer's connection that hands the WAL's appends to the operating system
//! in a few large writes per commit instead of two per page.
//!
//! SQLite writes each WAL frame as a 24-byte header and a page, each its own `pwrite`: ~100
//! system calls per submission, with three page-cache visits per frame instead of one, and the
//! kernel's write path was a third of the writer's time. Here a WAL file's contiguous appends
//! are gathered in memory and passed on before anything that must see them: a sync (so a commit
//! is on disk before SQLite publishes it in the WAL index and before the write is answered), a
//! read, a truncation, a size query, a file control, closing. Nothing is acknowledged in between,
//! so a process killed with appends still gathered loses only a transaction that never committed,
//! exactly as if SQLite had been killed before its sync. This holds only with `synchronous =
//! FULL`, where every commit syncs the WAL (the writer checks it). Every other file, and every
//! other call, goes straight to the platform's VFS.

use std::ffi::{CString, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The VFS name connections open with.
pub const NAME: &str = "gateway-batched-wal";

/// Gathered appends are passed on once they reach this size, whatever comes next.
const MAX_GATHERED: usize = 8 << 20;
/// The unix VFS writes at most 128 KB less a byte per call (it masks the length to 17 bits).
const MAX_WRITE: usize = 124 << 10;

/// The file object SQLite allocates for us: ours first, the platform's file right after it.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// Appends not yet passed on (only for a WAL file), starting at file offset `gathered_at`.
    gathered: Vec<u8>,
    gathered_at: i64,
    is_wal: bool,
}

/// Where the platform's file object starts inside ours (SQLite's allocations are 8-aligned).
const REAL_OFFSET: usize = std::mem::size_of::<File>().next_multiple_of(8);

/// The platform's VFS, whose `xOpen` does the opening.
static PLATFORM: OnceLock<usize> = OnceLock::new();

/// Register the VFS (once per process). Connections choose it by [`NAME`].
pub fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| unsafe {
            let platform = ffi::sqlite3_vfs_find(std::ptr::null());
            if platform.is_null() {
                return Err("SQLite has no default VFS".into());
            }
            PLATFORM.set(platform as usize).expect("registered once");
            // The platform's methods other than xOpen ignore the VFS they are called through (the
            // unix VFS's do), so they are taken over as they are.
            let mut vfs: ffi::sqlite3_vfs = *platform;
            vfs.szOsFile = (REAL_OFFSET + (*platform).szOsFile as usize) as c_int;
            vfs.pNext = std::ptr::null_mut();
            vfs.zName = CString::new(NAME).expect("no NUL").into_raw();
            vfs.xOpen = Some(x_open);
            let rc = ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0);
            if rc == ffi::SQLITE_OK { Ok(()) } else { Err(format!("registering the {NAME} VFS failed ({rc})")) }
        })
        .clone()
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: Some(x_fetch),
    xUnfetch: Some(x_unfetch),
};

unsafe extern "C" fn x_open(_vfs: *mut ffi::sqlite3_vfs, name: ffi::sqlite3_filename, file: *mut ffi::sqlite3_file, flags: c_int, out_flags: *mut c_int) -> c_int {
    unsafe {
        let platform = *PLATFORM.get().expect("registered before use") as *mut ffi::sqlite3_vfs;
        let ours = file as *mut File;
        let real = (file as *mut u8).add(REAL_OFFSET) as *mut ffi::sqlite3_file;
        (*ours).base.pMethods = std::ptr::null();
        (*real).pMethods = std::ptr::null();
        let rc = ((*platform).xOpen.expect("xOpen"))(platform, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            if !(*real).pMethods.is_null() {
                ((*(*real).pMethods).xClose.expect("xClose"))(real);
            }
            return rc;
        }
        std::ptr::addr_of_mut!((*ours).real).write(real);
        std::ptr::addr_of_mut!((*ours).gathered).write(Vec::new());
        std::ptr::addr_of_mut!((*ours).gathered_at).write(0);
        std::ptr::addr_of_mut!((*ours).is_wal).write(flags & ffi::SQLITE_OPEN_WAL != 0);
        (*ours).base.pMethods = &METHODS;
        ffi::SQLITE_OK
    }
}

/// Our file and the platform's methods for the file inside it.
unsafe fn parts<'f>(file: *mut ffi::sqlite3_file) -> (&'f mut File, &'f ffi::sqlite3_io_methods) {
    unsafe {
        let ours = &mut *(file as *mut File);
        let methods = &*(*ours.real).pMethods;
        (ours, methods)
    }
}

/// Pass the gathered appends on, in writes of up to `MAX_WRITE` bytes.
unsafe fn pass_on(ours: &mut File, methods: &ffi::sqlite3_io_methods) -> c_int {
    if ours.gathered.is_empty() {
        return ffi::SQLITE_OK;
    }
    let mut rc = ffi::SQLITE_OK;
    let mut at = ours.gathered_at;
    for chunk in ours.gathered.chunks(MAX_WRITE) {
        #[cfg(test)]
        tests::PASSED_ON.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rc = unsafe { (methods.xWrite.expect("xWrite"))(ours.real, chunk.as_ptr() as *const c_void, chunk.len() as c_int, at) };
        if rc != ffi::SQLITE_OK {
            break;
        }
        at += chunk.len() as i64;
    }
    // On failure too: SQLite fails the transaction, and frames past its last commit are not read.
    ours.gathered.clear();
    rc
}

unsafe extern "C" fn x_write(file: *mut ffi::sqlite3_file, data: *const c_void, amount: c_int, offset: ffi::sqlite3_int64) -> c_int {
    unsafe {
        let (ours, methods) = parts(file);
        if !ours.is_wal {
            return (methods.xWrite.expect("xWrite"))(ours.real, data, amount, offset);
        }
        #[cfg(test)]
        tests::WAL_WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let follows = ours.gathered_at + ours.gathered.len() as i64 == offset;
        if !ours.gathered.is_empty() && (!follows || ours.gathered.len() + amount as usize > MAX_GATHERED) {
            let rc = pass_on(ours, methods);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if ours.gathered.is_empty() {
            ours.gathered_at = offset;
        }
        ours.gathered.extend_from_slice(std::slice::from_raw_parts(data as *const u8, amount as usize));
        ffi::SQLITE_OK
    }
}

/// Pass the gathered appends on, then make the call.
macro_rules! after_passing_on {
    ($file:ident, |$ours:ident, $methods:ident| $call:expr) => {
        unsafe {
            let ($ours, $methods) = parts($file);
            let rc = pass_on($ours, $methods);
            if rc != ffi::SQLITE_OK { rc } else { $call }
        }
    };
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let (ours, methods) = parts(file);
        let passed = pass_on(ours, methods);
        let closed = (methods.xClose.expect("xClose"))(ours.real);
        std::ptr::drop_in_place(&mut ours.gathered);
        ours.base.pMethods = std::ptr::null();
        if passed != ffi::SQLITE_OK { passed } else { closed }
    }
}

unsafe extern "C" fn x_read(file: *mut ffi::sqlite3_file, data: *mut c_void, amount: c_int, offset: ffi::sqlite3_int64) -> c_int {
    after_passing_on!(file, |ours, methods| (methods.xRead.expect("xRead"))(ours.real, data, amount, offset))
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    after_passing_on!(file, |ours, methods| (methods.xTruncate.expect("xTruncate"))(ours.real, size))
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    after_passing_on!(file, |ours, methods| (methods.xSync.expect("xSync"))(ours.real, flags))
}

unsafe extern "C" fn x_file_size(file: *mut ffi::sqlite3_file, size: *mut ffi::sqlite3_int64) -> c_int {
    after_passing_on!(file, |ours, methods| (methods.xFileSize.expect("xFileSize"))(ours.real, size))
}

unsafe extern "C" fn x_file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    after_passing_on!(file, |ours, methods| (methods.xFileControl.expect("xFileControl"))(ours.real, op, arg))
}

unsafe extern "C" fn x_fetch(file: *mut ffi::sqlite3_file, offset: ffi::sqlite3_int64, amount: c_int, pages: *mut *mut c_void) -> c_int {
    after_passing_on!(file, |ours, methods| match methods.xFetch {
        Some(fetch) => fetch(ours.real, offset, amount, pages),
        // a file without memory-mapped reads: SQLite then reads as usual
        None => {
            *pages = std::ptr::null_mut();
            ffi::SQLITE_OK
        }
    })
}

/// Calls that neither read nor write the file's bytes go straight through; `$missing` answers a
/// method the platform's file lacks (its methods may be of an older version than ours).
macro_rules! straight_through {
    ($name:ident => $method:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty, else $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            unsafe {
                let (ours, methods) = parts(file);
                match methods.$method {
                    Some(method) => method(ours.real $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

straight_through!(x_lock => xLock(level: c_int) -> c_int, else ffi::SQLITE_IOERR_LOCK);
straight_through!(x_unlock => xUnlock(level: c_int) -> c_int, else ffi::SQLITE_IOERR_UNLOCK);
straight_through!(x_check_reserved_lock => xCheckReservedLock(out: *mut c_int) -> c_int, else ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
straight_through!(x_sector_size => xSectorSize() -> c_int, else 4096);
straight_through!(x_device_characteristics => xDeviceCharacteristics() -> c_int, else 0);
straight_through!(x_shm_map => xShmMap(region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int, else ffi::SQLITE_IOERR_SHMMAP);
straight_through!(x_shm_lock => xShmLock(offset: c_int, n: c_int, flags: c_int) -> c_int, else ffi::SQLITE_IOERR_SHMLOCK);
straight_through!(x_shm_barrier => xShmBarrier() -> (), else ());
straight_through!(x_shm_unmap => xShmUnmap(delete: c_int) -> c_int, else ffi::SQLITE_OK);
straight_through!(x_unfetch => xUnfetch(offset: ffi::sqlite3_int64, page: *mut c_void) -> c_int, else ffi::SQLITE_OK);

#[cfg(test)]
pub(super) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rusqlite::{Connection, OpenFlags};

    use super::*;

    /// WAL writes SQLite made, and writes passed on to the platform's VFS (all tests together).
    pub static WAL_WRITES: AtomicUsize = AtomicUsize::new(0);
    pub static PASSED_ON: AtomicUsize = AtomicUsize::new(0);

    fn writer(path: &std::path::Path) -> Connection {
        register().expect("registered");
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), NAME).expect("open");
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0").expect("pragmas");
        conn
    }

    /// Commits are whole and visible to a connection on the platform's VFS right after each one,
    /// across WAL restarts and transactions larger than the page cache (which spill frames and
    /// read them back mid-transaction); they survive closing and reopening; and the frames of a
    /// commit reach the platform in far fewer writes than SQLite made.
    #[test]
    fn commits_are_whole_visible_and_durable_and_written_in_few_writes() {
        let dir = std::env::temp_dir().join(format!("gateway-batched-wal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("batched.db");
        let w = writer(&path);
        w.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL); CREATE INDEX t_v ON t (v)").expect("schema");
        let reader = Connection::open(&path).expect("reader");
        let mut expected = 0i64;
        let mut commit = |w: &Connection, round: i64, rows: i64| {
            w.execute_batch("BEGIN").expect("begin");
            for n in 0..rows {
                // an index on a scattered text: each transaction dirties pages all over it
                let v = format!("{:x}-{round}-{n}-{}", (n * 7919 + round * 104729) % 65521, "x".repeat(40));
                w.execute("INSERT INTO t (v) VALUES (?1)", [v]).expect("insert");
            }
            w.execute_batch("COMMIT").expect("commit");
            expected += rows;
            let seen: i64 = reader.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("count");
            assert_eq!(seen, expected, "round {round}");
            if round % 8 == 7 {
                w.execute_batch("PRAGMA wal_checkpoint(RESTART)").expect("restart");
            }
        };
        let before = (WAL_WRITES.load(Ordering::Relaxed), PASSED_ON.load(Ordering::Relaxed));
        for round in 0..40 {
            commit(&w, round, 200);
        }
        let (made, passed) = (WAL_WRITES.load(Ordering::Relaxed) - before.0, PASSED_ON.load(Ordering::Relaxed) - before.1);
        assert!(made > 40 * 100 && passed * 20 < made, "SQLite made {made} WAL writes, {passed} were passed on");
        // a page cache of 16 pages: every transaction spills frames and reads some back
        w.execute_batch("PRAGMA cache_size = 16").expect("small cache");
        for round in 40..60 {
            commit(&w, round, if round % 10 == 9 { 2000 } else { 200 });
        }
        drop((w, reader));
        let reopened = writer(&path);
        let count: i64 = reopened.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("count");
        assert_eq!(count, expected);
        let check: String = reopened.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity");
        assert_eq!(check, "ok");
        drop(reopened);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
