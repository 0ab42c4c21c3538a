//! SQLite's single writer: takes queued write requests and commits them in batches.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{Op, Outcome, StoreError, WriteJob, apply::apply, conn::SqliteConn};
use crate::search::SearchIndex;

/// Requests committed together at most; bounds the latency one batch adds.
const MAX_BATCH: usize = 256;
/// See [`gather`].
const GATHER_UP_TO: usize = 8;
const GATHER_WINDOW: Duration = Duration::from_millis(3);
const GATHER_EXPECTING: f64 = 2.0;
const GATHER_POLL: Duration = Duration::from_micros(250);

/// Copy the WAL back into the database file once a second, beside the writer rather than
/// inside its commits (PASSIVE: never blocks anyone). Each pass copies the latest version of
/// every page written since the last one, and the pages at the ends of the indexes change in
/// every commit: passes four times a second wrote 10-20 % more to disk per submission and
/// left the writer waiting longer on its own writes (+7 % submissions/s at once a second).
/// That alone never lets the WAL start over while writes keep coming (there are always frames
/// newer than the checkpoint), so the file grew without bound (2 GB in 12 s of creates) and
/// every frame landed on newly allocated blocks.
/// Past a size, the checkpointer asks the writer to RESTART the WAL between two batches. The
/// writer stands still for what that copies and syncs, so before asking, the checkpointer repeats
/// PASSIVE passes until one finds little new: each pass copies what the writer added during the
/// previous one (a RESTART right after a single pass copied a tenth of a second of frames and
/// held every write for 50-100 ms, once a second). The writer waits at most for readers to finish
/// a statement (a RESTART from here had to wait for the writer's lock, and the writer then for
/// it, each in the busy handler's growing sleeps: 200 ms create latencies).
pub fn spawn_checkpointer(path: &str) -> Result<Arc<AtomicBool>, StoreError> {
    /// 384 MB of 4 KB pages: a restart stalls the writer for 50-90 ms (it copies and syncs what
    /// came after the last pass), so at 1,000 submissions/s (~200 MB of WAL a second) it comes
    /// every ~4 s instead of every 1-2 s.
    const RESTART_AFTER_FRAMES: i64 = 98_304;
    /// A pass that copied fewer new frames than this leaves little for the writer's RESTART.
    const SETTLED_FRAMES: i64 = 1024;
    /// Under load a pass and its sync take ~0.3 s and never settle: more passes only grow the
    /// WAL (with 6, past its 1 GB `journal_size_limit`, which the restart cuts back and the next
    /// commit regrows: 200 ms). With 3 it stays under 1 GB, all a crash can leave to recover.
    const MAX_PASSES: usize = 3;
    let conn = open(path, false)?;
    let database_file = std::fs::File::open(path).map_err(|e| StoreError::Sqlite(format!("{path}: {e}")))?;
    let restart_wanted = Arc::new(AtomicBool::new(false));
    // Held weakly: once the writer has stopped (and dropped the flag), so does the checkpointer.
    let flag = Arc::downgrade(&restart_wanted);
    let pass = move || conn.0.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?)));
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            // Copying a second of pages back costs a core for a tenth of a second; below the
            // requests' priority, that time no longer shows in their latency.
            set_priority(10, "the SQLite checkpointer");
            // Its disk writes only when the writer's are not waiting.
            set_idle_io_priority("the SQLite checkpointer");
            // The frames copied back as of the last sync (SQLite counts from the WAL's start).
            let mut synced = 0;
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let Some(flag) = flag.upgrade() else { return };
                let mut copied_before = 0;
                for n in 0..MAX_PASSES {
                    // (frames in the WAL, frames copied back)
                    let (frames, copied) = match pass() {
                        Ok(counts) => counts,
                        Err(e) => {
                            tracing::warn!(error = %e, "WAL checkpoint failed");
                            break;
                        }
                    };
                    // SQLite's passes that stop short of the end of the WAL copy without syncing
                    // the database file, and the one that reaches it (the writer's RESTART)
                    // syncs all of that: sync after each pass that copied anything new, here,
                    // off the writer's path.
                    if copied != synced {
                        if let Err(e) = sync_in_steps(&database_file) {
                            tracing::warn!(error = %e, "syncing the database file failed");
                        }
                        synced = copied;
                    }
                    if frames <= RESTART_AFTER_FRAMES {
                        break;
                    }
                    // Past twice the threshold (slow passes), restart now: nearer the 1 GB limit,
                    // one took 220 ms (its copy alone 140 ms of CPU).
                    if copied - copied_before < SETTLED_FRAMES || n + 1 == MAX_PASSES || frames > 2 * RESTART_AFTER_FRAMES {
                        flag.store(true, Ordering::Relaxed);
                        break;
                    }
                    copied_before = copied;
                }
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the SQLite checkpointer: {e}")))?;
    Ok(restart_wanted)
}

/// Sync the database file a few megabytes at a time, then the rest (its size, the disk's cache).
/// A pass copies a second of commits' pages back, and syncing them in one go queued ~100 MB of
/// writes ahead of the writer's next WAL sync: every second one commit took 70-100 ms and the
/// ones during the following passes 15-55 ms. In steps, the writer's sync waits for one step.
/// The steps cover the whole file, most of it clean: 500 calls for a 1 GB database.
fn sync_in_steps(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const STEP: u64 = 2 << 20;
    let size = file.metadata()?.len();
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    for at in (0..size).step_by(STEP as usize) {
        if unsafe { libc::sync_file_range(file.as_raw_fd(), at as libc::off64_t, STEP as libc::off64_t, flags) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    file.sync_data()
}

/// The writer runs on a thread of its own with its own SQLite connection, so every statement
/// runs in place (see `conn`), and its commits never wait behind a request being validated on a
/// shared runtime worker.
pub fn spawn(path: &str, index: Arc<SearchIndex>, restart_wanted: Arc<AtomicBool>) -> Result<mpsc::Sender<WriteJob>, StoreError> {
    let conn = open(path, true)?;
    let (sender, receiver) = mpsc::channel(4 * MAX_BATCH);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| StoreError::Unavailable(format!("cannot start the SQLite writer: {e}")))?;
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || {
            raise_priority();
            runtime.block_on(run(conn, index, receiver, restart_wanted))
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the SQLite writer: {e}")))?;
    Ok(sender)
}

/// Every write waits for this one serial stage, and under a submission load it spent a sixth of
/// its time waiting for a core behind requests being validated: it runs ahead of them where the
/// process may raise a thread's priority (CAP_SYS_NICE, or root).
fn raise_priority() {
    set_priority(-10, "the SQLite writer");
}

/// Linux nice values are per thread: set this thread's (`what` names it in the log when refused).
fn set_priority(nice: libc::c_int, what: &str) {
    let set = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0
    };
    if !set {
        tracing::info!("{what} runs at the normal priority (changing it was refused)");
    }
}

/// Linux I/O priorities are per thread too: put this thread's disk requests in the idle class,
/// which mq-deadline serves when no other request waits (or once one has waited 10 s).
fn set_idle_io_priority(what: &str) {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3 << 13;
    let set = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, libc::syscall(libc::SYS_gettid), IOPRIO_CLASS_IDLE) == 0 };
    if !set {
        tracing::info!("{what}'s disk requests keep the normal I/O priority (changing it was refused)");
    }
}

/// The writer's connection (its WAL appends batched, see `batched_wal`) or the checkpointer's:
/// the pool's pragmas, no automatic checkpoints (the checkpointer runs beside the writer), and
/// room for every statement the write path uses in the statement cache.
fn open(path: &str, batched_wal: bool) -> Result<SqliteConn, StoreError> {
    let opened = if batched_wal {
        super::batched_wal::register().map_err(StoreError::Sqlite)?;
        rusqlite::Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), super::batched_wal::NAME)
    } else {
        rusqlite::Connection::open(path)
    };
    let conn = SqliteConn(opened.map_err(|e| StoreError::Sqlite(format!("{path}: {e}")))?);
    conn.0.set_prepared_statement_cache_capacity(128);
    // A smaller page cache than the readers': while the database is under 1 GB, SQLite scans the
    // writer's whole page-cache hash table at every commit (`balance_nonroot` briefly numbers a
    // page 262,145, past the end of the file, and the commit then truncates the cache back to the
    // file's size). At 64 MB that scan was 7 % of the writer; the pages it rewrites stay cached.
    for pragma in super::SQLITE_PRAGMAS.iter().chain(&["PRAGMA wal_autocheckpoint = 0", "PRAGMA cache_size = -8192"]) {
        conn.run(pragma)?;
    }
    // Batched appends are passed on at the commit's sync; without one (synchronous below FULL)
    // SQLite would publish frames the file does not have yet.
    let synchronous: i64 = conn.0.query_row("PRAGMA synchronous", [], |row| row.get(0)).map_err(|e| StoreError::Sqlite(e.to_string()))?;
    if batched_wal && synchronous < 2 {
        return Err(StoreError::Sqlite(format!("the writer's WAL batching needs synchronous = FULL, not {synchronous}")));
    }
    Ok(conn)
}

async fn run(mut conn: SqliteConn, index: Arc<SearchIndex>, mut queue: mpsc::Receiver<WriteJob>, restart_wanted: Arc<AtomicBool>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut arrivals = ArrivalRate::new();
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if arrivals.worth_gathering() {
            gather(&mut queue, &mut batch);
        }
        arrivals.add(batch.len(), Instant::now());
        let results = commit_batch(&mut conn, &index, &mut batch).await;
        for (job, result) in batch.drain(..).zip(results) {
            // The requester may have gone away; its write is committed regardless.
            let _ = job.reply.send(result);
        }
        if restart_wanted.swap(false, Ordering::Relaxed)
            && let Err(e) = restart_wal(&conn)
        {
            tracing::warn!(error = %e, "WAL checkpoint (restart) failed");
        }
    }
}

/// Group commit: when writes arrive fast enough that the window is expected to bring
/// [`GATHER_EXPECTING`] more, top a small batch up before committing it. Every commit rewrites
/// the pages at the ends of the indexes (one per code, profile, status... that its resources
/// share) and syncs the WAL: at a fixed 1,000 submissions/s the batches were ~3 submissions,
/// and gathering them took the writer's CPU down by a sixth. Gated on the arrival rate, which
/// gathering does not change: gates on the writer's busy share or on the last batch's size fed
/// on themselves, and at 300/s a wait only added latency. It polls with short sleeps because
/// tokio's timer has millisecond ticks; blocking is fine on this thread, whose runtime runs
/// only the writer.
fn gather(queue: &mut mpsc::Receiver<WriteJob>, batch: &mut Vec<WriteJob>) {
    let deadline = Instant::now() + GATHER_WINDOW;
    while batch.len() < GATHER_UP_TO && Instant::now() < deadline {
        std::thread::sleep(GATHER_POLL);
        while batch.len() < MAX_BATCH
            && let Ok(job) = queue.try_recv()
        {
            batch.push(job);
        }
    }
}

/// Writes per second lately: jobs and time, both decayed with a half-life of half a second.
struct ArrivalRate {
    jobs: f64,
    seconds: f64,
    since: Instant,
}

impl ArrivalRate {
    fn new() -> ArrivalRate {
        ArrivalRate { jobs: 0.0, seconds: 0.0, since: Instant::now() }
    }

    /// `jobs` arrived since the last call.
    fn add(&mut self, jobs: usize, now: Instant) {
        let elapsed = now.saturating_duration_since(self.since).as_secs_f64();
        self.since = now;
        let keep = 0.5_f64.powf(elapsed / 0.5);
        self.jobs = self.jobs * keep + jobs as f64;
        self.seconds = self.seconds * keep + elapsed;
    }

    fn per_second(&self) -> f64 {
        if self.seconds > 0.0 { self.jobs / self.seconds } else { 0.0 }
    }

    fn worth_gathering(&self) -> bool {
        self.per_second() * GATHER_WINDOW.as_secs_f64() >= GATHER_EXPECTING
    }
}

/// Every job of a batch answered "not committed" (503): nothing of the batch was stored.
fn not_committed(e: &dyn std::fmt::Display, jobs: usize) -> Vec<Result<Vec<Outcome>, StoreError>> {
    (0..jobs).map(|_| Err(StoreError::Unavailable(format!("write not committed: {e}")))).collect()
}

/// RESTART the WAL without waiting: should a reader still be on an older snapshot, the pass
/// copies what it can and the checkpointer asks again on its next tick (waiting would hold every
/// write for as long as that read lasts).
fn restart_wal(conn: &SqliteConn) -> Result<(), StoreError> {
    conn.run("PRAGMA busy_timeout = 0")?;
    let restarted = conn.run("PRAGMA wal_checkpoint(RESTART)");
    conn.run("PRAGMA busy_timeout = 10000")?;
    restarted
}

/// The common case under load: every job is one plain create (server-assigned id, no
/// condition). Those cannot conflict with each other, so they are written together without a
/// savepoint each. `None` (after rolling back) when the batch is not of that shape or the
/// combined write failed: the caller then takes the careful path.
async fn plain_creates_together(
    conn: &mut SqliteConn,
    batch: &mut [WriteJob],
) -> Option<Vec<Result<Vec<Outcome>, StoreError>>> {
    let (resources, rows) = super::plain_creates(batch)?;
    let stored = super::apply::create_many(conn, resources, rows, super::now_micros()).await;
    match stored {
        Ok(stored) if conn.run("COMMIT").is_ok() => Some(stored.into_iter().map(|s| Ok(vec![Outcome::Created(s)])).collect()),
        _ => {
            let _ = conn.run("ROLLBACK");
            match conn.run("BEGIN IMMEDIATE") {
                Ok(_) => None,
                Err(e) => Some(not_committed(&e, batch.len())),
            }
        }
    }
}

/// Jobs that can only fail when the database itself does (disk full, I/O error) need no
/// savepoint each: a savepoint copies every page a job touches before changing it, which was a
/// sixth of the writer's time on submissions. Should one fail all the same, the batch is rolled
/// back and every job is answered "not committed" (503): nothing is half-stored, and the
/// failure that caused it would most likely have failed the others too.
async fn without_savepoints(conn: &mut SqliteConn, index: &SearchIndex, batch: &mut [WriteJob]) -> Vec<Result<Vec<Outcome>, StoreError>> {
    let mut results = Vec::with_capacity(batch.len());
    let mut failure = None;
    for job in batch.iter_mut() {
        match apply(conn, index, std::mem::take(&mut job.ops), std::mem::take(&mut job.prepared)).await {
            Ok(outcomes) => results.push(Ok(outcomes)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = match failure {
        None => match conn.run("COMMIT") {
            Ok(()) => return results,
            Err(e) => e,
        },
        Some(e) => e,
    };
    let _ = conn.run("ROLLBACK");
    // This job may have been fine: another one's failure rolled it back with the batch.
    (0..batch.len()).map(|_| Err(StoreError::Unavailable(format!("write not committed, please retry: {failure}")))).collect()
}

/// Apply every job in its own savepoint inside one transaction; on a failed commit every job
/// fails, so no caller is told "stored" for something that is not.
async fn commit_batch(conn: &mut SqliteConn, index: &SearchIndex, batch: &mut [WriteJob]) -> Vec<Result<Vec<Outcome>, StoreError>> {
    if let Err(e) = conn.run("BEGIN IMMEDIATE") {
        return not_committed(&e, batch.len());
    }
    if batch.len() > 1
        && let Some(results) = plain_creates_together(conn, batch).await
    {
        return results;
    }
    // A lone job needs no savepoint: its failure rolls the whole transaction back.
    if let [job] = batch {
        let result = apply(conn, index, std::mem::take(&mut job.ops), std::mem::take(&mut job.prepared)).await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        return match conn.run(end) {
            Ok(_) => vec![result],
            Err(e) => {
                let _ = conn.run("ROLLBACK");
                not_committed(&e, 1)
            }
        };
    }
    if batch.iter().all(|job| job.ops.iter().all(Op::fails_only_in_the_database)) {
        return without_savepoints(conn, index, batch).await;
    }
    let mut results = Vec::with_capacity(batch.len());
    for job in batch.iter_mut() {
        let ops = std::mem::take(&mut job.ops);
        let prepared = std::mem::take(&mut job.prepared);
        if let Err(e) = conn.run("SAVEPOINT job") {
            results.push(Err(e));
            continue;
        }
        let result = apply(conn, index, ops, prepared).await;
        let end = if result.is_ok() { conn.run("RELEASE job") } else { conn.run("ROLLBACK TO job").and_then(|_| conn.run("RELEASE job")) };
        match end {
            Ok(_) => results.push(result),
            Err(e) => {
                let _ = conn.run("ROLLBACK");
                return not_committed(&e, batch.len());
            }
        }
    }
    if let Err(e) = conn.run("COMMIT") {
        let _ = conn.run("ROLLBACK");
        return not_committed(&e, batch.len());
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arrival_rate_follows_the_writes_and_gathering_starts_only_when_the_window_would_bring_two() {
        let mut rate = ArrivalRate::new();
        let mut now = rate.since;
        // 1,000 writes/s, as batches of three every 3 ms, for a second.
        for _ in 0..333 {
            now += Duration::from_millis(3);
            rate.add(3, now);
        }
        assert!((rate.per_second() - 1000.0).abs() < 20.0, "{}", rate.per_second());
        assert!(rate.worth_gathering());
        // Then 500/s for three seconds: the estimate follows, and a 3 ms window would bring 1.5.
        for _ in 0..1500 {
            now += Duration::from_millis(2);
            rate.add(1, now);
        }
        assert!((rate.per_second() - 500.0).abs() < 20.0, "{}", rate.per_second());
        assert!(!rate.worth_gathering());
        // A write after three quiet seconds sees a low rate.
        now += Duration::from_secs(3);
        rate.add(1, now);
        assert!(rate.per_second() < 50.0, "{}", rate.per_second());
    }
}
