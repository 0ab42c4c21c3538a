//! SQLite's single writer: takes queued write requests and commits them in batches.

use std::sync::Arc;

use sqlx::{AnyConnection, Executor};
use tokio::sync::{mpsc, oneshot};

use super::{Engine, Op, Outcome, StoreError, apply::apply};
use crate::search::SearchIndex;

/// Requests committed together at most; bounds the latency one batch adds.
const MAX_BATCH: usize = 256;

pub struct Job {
    pub ops: Vec<Op>,
    pub reply: oneshot::Sender<Result<Vec<Outcome>, StoreError>>,
}

pub fn spawn(conn: AnyConnection, index: Arc<SearchIndex>) -> mpsc::Sender<Job> {
    let (sender, receiver) = mpsc::channel(4 * MAX_BATCH);
    tokio::spawn(run(conn, index, receiver));
    sender
}

async fn run(mut conn: AnyConnection, index: Arc<SearchIndex>, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let results = commit_batch(&mut conn, &index, &mut batch).await;
        for (job, result) in batch.drain(..).zip(results) {
            // The requester may have gone away; its write is committed regardless.
            let _ = job.reply.send(result);
        }
    }
}

/// Apply every job in its own savepoint inside one transaction; on a failed commit every job
/// fails, so no caller is told "stored" for something that is not.
async fn commit_batch(
    conn: &mut AnyConnection,
    index: &SearchIndex,
    batch: &mut [Job],
) -> Vec<Result<Vec<Outcome>, StoreError>> {
    let fail_all = |e: &dyn std::fmt::Display, n: usize| {
        (0..n).map(|_| Err(StoreError::Unavailable(format!("write not committed: {e}")))).collect()
    };
    if let Err(e) = conn.execute("BEGIN IMMEDIATE").await {
        return fail_all(&e, batch.len());
    }
    let mut results = Vec::with_capacity(batch.len());
    for job in batch.iter_mut() {
        let ops = std::mem::take(&mut job.ops);
        if let Err(e) = conn.execute("SAVEPOINT job").await {
            results.push(Err(e.into()));
            continue;
        }
        let result = apply(conn, Engine::Sqlite, index, ops).await;
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
