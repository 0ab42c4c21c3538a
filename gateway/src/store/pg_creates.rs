//! PostgreSQL's lane for plain creates (server-assigned id, no condition): the write most
//! clients make most often. Queued creates are written together, a few multi-row statements and
//! one commit for many requests, instead of a transaction with its own round trips and fsync
//! each. Other writes keep their own pool transactions.

use std::sync::Arc;

use sqlx::AnyPool;
use tokio::sync::{Mutex, mpsc};

use super::{Outcome, StoreError, WriteJob, apply};
use crate::search::SearchIndex;

/// Creates written together at most.
const MAX_BATCH: usize = 256;
/// Batches in flight at once: one commits while the next is written.
const LANES: usize = 2;

pub fn spawn(pool: AnyPool, index: Arc<SearchIndex>) -> mpsc::Sender<WriteJob> {
    let (sender, receiver) = mpsc::channel(4 * MAX_BATCH);
    let receiver = Arc::new(Mutex::new(receiver));
    for _ in 0..LANES {
        let (pool, index, receiver) = (pool.clone(), index.clone(), receiver.clone());
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            loop {
                if receiver.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
                    return;
                }
                let results = write_batch(&pool, &index, &mut batch).await;
                for (job, result) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
            }
        });
    }
    sender
}

/// All creates in one transaction; should that fail, each in its own, so that one bad request
/// cannot fail the others.
async fn write_batch(pool: &AnyPool, index: &SearchIndex, batch: &mut [WriteJob]) -> Vec<Result<Vec<Outcome>, StoreError>> {
    // Only plain creates are queued here (`Store::write`).
    let (resources, rows) = super::plain_creates(batch).expect("the lane takes plain creates only");
    let together = async {
        let mut tx = pool.begin().await?;
        let stored = apply::create_many(&mut *tx, resources, rows, super::now_micros()).await?;
        tx.commit().await?;
        Ok::<_, StoreError>(stored)
    }
    .await;
    match together {
        Ok(stored) => stored.into_iter().map(|s| Ok(vec![Outcome::Created(s)])).collect(),
        Err(_) => {
            let mut results = Vec::with_capacity(batch.len());
            for job in batch.iter_mut() {
                let (ops, prepared) = (std::mem::take(&mut job.ops), std::mem::take(&mut job.prepared));
                let alone = async {
                    let mut tx = pool.begin().await?;
                    let outcomes = apply::apply(&mut *tx, index, ops, prepared).await?;
                    tx.commit().await?;
                    Ok(outcomes)
                };
                results.push(alone.await);
            }
            results
        }
    }
}
