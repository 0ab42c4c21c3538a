//! SQLite's single writer: takes queued write requests and commits them in batches.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use sqlx::{AnyConnection, Executor, Row};
use tokio::sync::mpsc;

use super::{
    Engine, Outcome, StoreError, WriteJob,
    apply::apply,
};
use crate::search::SearchIndex;

/// Requests committed together at most; bounds the latency one batch adds.
const MAX_BATCH: usize = 256;

/// Copy the WAL back into the database file a few times a second, beside the writer rather
/// than inside its commits (PASSIVE: never blocks anyone). That alone never lets the WAL start
/// over while writes keep coming (there are always frames newer than the checkpoint), so the file
/// grew without bound (2 GB in 12 s of creates) and every frame landed on newly allocated blocks.
/// Past a size, the checkpointer asks the writer to RESTART the WAL between two batches: by then
/// PASSIVE passes have copied nearly everything, and the writer waits at most for readers to
/// finish a statement (a RESTART from here had to wait for the writer's lock, and the writer then
/// for it, each in the busy handler's growing sleeps: 200 ms create latencies).
pub fn spawn_checkpointer(pool: sqlx::AnyPool) -> Arc<AtomicBool> {
    /// 16 MB of 4 KB pages: big enough that restarts are rare, small enough to stay cached.
    const RESTART_AFTER_FRAMES: i64 = 4096;
    let restart_wanted = Arc::new(AtomicBool::new(false));
    let flag = restart_wanted.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            tick.tick().await;
            // The result row: (busy, frames in the WAL, frames copied back).
            match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await {
                Ok(row) if row.try_get::<i64, _>(1).unwrap_or(0) > RESTART_AFTER_FRAMES => flag.store(true, Ordering::Relaxed),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
            }
        }
    });
    restart_wanted
}

/// The writer runs on a thread of its own. Each statement is a round trip to sqlx's SQLite
/// thread, and on the shared runtime a reply could wait behind a request being validated on the
/// same worker (184 -> 200 submissions/s under the same load when moved).
pub fn spawn(conn: AnyConnection, index: Arc<SearchIndex>, restart_wanted: Arc<AtomicBool>) -> std::io::Result<mpsc::Sender<WriteJob>> {
    let (sender, receiver) = mpsc::channel(4 * MAX_BATCH);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || runtime.block_on(run(conn, index, receiver, restart_wanted)))?;
    Ok(sender)
}

async fn run(mut conn: AnyConnection, index: Arc<SearchIndex>, mut queue: mpsc::Receiver<WriteJob>, restart_wanted: Arc<AtomicBool>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let results = commit_batch(&mut conn, &index, &mut batch).await;
        for (job, result) in batch.drain(..).zip(results) {
            // The requester may have gone away; its write is committed regardless.
            let _ = job.reply.send(result);
        }
        if restart_wanted.swap(false, Ordering::Relaxed)
            && let Err(e) = restart_wal(&mut conn).await
        {
            tracing::warn!(error = %e, "WAL checkpoint (restart) failed");
        }
    }
}

/// RESTART the WAL without waiting: should a reader still be on an older snapshot, the pass
/// copies what it can and the checkpointer asks again on its next tick (waiting would hold every
/// write for as long as that read lasts).
async fn restart_wal(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    conn.execute("PRAGMA busy_timeout = 0").await?;
    let restarted = conn.execute("PRAGMA wal_checkpoint(RESTART)").await;
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    restarted.map(|_| ())
}

/// The common case under load: every job is one plain create (server-assigned id, no
/// condition). Those cannot conflict with each other, so they are written with a few multi-row
/// statements instead of several statements each. `None` (after rolling back) when the batch is
/// not of that shape or the combined write failed: the caller then takes the careful path.
async fn plain_creates_together(
    conn: &mut AnyConnection,
    index: &SearchIndex,
    batch: &mut [WriteJob],
) -> Option<Vec<Result<Vec<Outcome>, StoreError>>> {
    let (resources, rows) = super::plain_creates(batch)?;
    let stored = super::apply::create_many(conn, index, resources, Some(rows), super::now_micros()).await;
    match stored {
        Ok(stored) if conn.execute("COMMIT").await.is_ok() => {
            Some(stored.into_iter().map(|s| Ok(vec![Outcome::Created(s)])).collect())
        }
        _ => {
            let _ = conn.execute("ROLLBACK").await;
            match conn.execute("BEGIN IMMEDIATE").await {
                Ok(_) => None,
                Err(e) => Some(batch.iter().map(|_| Err(StoreError::Unavailable(format!("write not committed: {e}")))).collect()),
            }
        }
    }
}

/// Apply every job in its own savepoint inside one transaction; on a failed commit every job
/// fails, so no caller is told "stored" for something that is not.
async fn commit_batch(
    conn: &mut AnyConnection,
    index: &SearchIndex,
    batch: &mut [WriteJob],
) -> Vec<Result<Vec<Outcome>, StoreError>> {
    let fail_all = |e: &dyn std::fmt::Display, n: usize| {
        (0..n).map(|_| Err(StoreError::Unavailable(format!("write not committed: {e}")))).collect()
    };
    if let Err(e) = conn.execute("BEGIN IMMEDIATE").await {
        return fail_all(&e, batch.len());
    }
    if batch.len() > 1
        && let Some(results) = plain_creates_together(conn, index, batch).await
    {
        return results;
    }
    // A lone job needs no savepoint: its failure rolls the whole transaction back.
    if let [job] = batch {
        let result = apply(conn, Engine::Sqlite, index, std::mem::take(&mut job.ops), std::mem::take(&mut job.prepared)).await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        return match conn.execute(end).await {
            Ok(_) => vec![result],
            Err(e) => {
                let _ = conn.execute("ROLLBACK").await;
                fail_all(&e, 1)
            }
        };
    }
    let mut results = Vec::with_capacity(batch.len());
    for job in batch.iter_mut() {
        let ops = std::mem::take(&mut job.ops);
        let prepared = std::mem::take(&mut job.prepared);
        if let Err(e) = conn.execute("SAVEPOINT job").await {
            results.push(Err(e.into()));
            continue;
        }
        let result = apply(conn, Engine::Sqlite, index, ops, prepared).await;
        let end = if result.is_ok() { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
        match conn.execute(end).await {
            Ok(_) => results.push(result),
            Err(e) => {
                let _ = conn.execute("ROLLBACK").await;
                return fail_all(&e, batch.len());
            }
        }
    }
    if let Err(e) = conn.execute("COMMIT").await {
        let _ = conn.execute("ROLLBACK").await;
        return fail_all(&e, batch.len());
    }
    results
}
