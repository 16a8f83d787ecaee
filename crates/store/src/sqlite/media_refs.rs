//! [`MediaRefs`] on SQLite: the `media_refs` table, one row per file and
//! message that carries it, plus the mark of a file being deleted; each
//! call one transaction under the writer lock.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sea_orm::{ConnectionTrait, DbErr, TransactionTrait};

use super::{SqliteStore, failed, stmt};
use crate::media_refs::DELETING;
use crate::{MediaRefs, StoreError};

/// Rows of `media` with message `message`.
async fn count(
    db: &impl ConnectionTrait,
    media: &str,
    message: Option<&str>,
) -> Result<i64, DbErr> {
    let (sql, values) = match message {
        Some(message) => (
            "SELECT COUNT(*) FROM media_refs WHERE media = ? AND message = ?",
            vec![media.into(), message.into()],
        ),
        None => (
            "SELECT COUNT(*) FROM media_refs WHERE media = ?",
            vec![media.into()],
        ),
    };
    db.query_one_raw(stmt(sql, values))
        .await?
        .map_or(Ok(0), |row| row.try_get_by_index::<i64>(0))
}

impl MediaRefs for SqliteStore {
    fn hold(&self, media: &str, message: &str) -> BoxFuture<'static, Result<bool, StoreError>> {
        let (this, media, message) = (self.clone(), media.to_owned(), message.to_owned());
        async move {
            let _writer = this.inner.writer().await;
            let run = async {
                let txn = this.inner.db.begin().await?;
                if count(&txn, &media, Some(DELETING)).await? > 0 {
                    return Ok(false);
                }
                txn.execute_raw(stmt(
                    "INSERT OR IGNORE INTO media_refs (media, message) VALUES (?, ?)",
                    vec![media.clone().into(), message.into()],
                ))
                .await?;
                txn.commit().await?;
                Ok::<_, DbErr>(true)
            };
            run.await.map_err(|e| failed("noting a file's message", e))
        }
        .boxed()
    }

    fn release(&self, media: &str, message: &str) -> BoxFuture<'static, Result<bool, StoreError>> {
        let (this, media, message) = (self.clone(), media.to_owned(), message.to_owned());
        async move {
            let _writer = this.inner.writer().await;
            let run = async {
                let txn = this.inner.db.begin().await?;
                let removed = txn
                    .execute_raw(stmt(
                        "DELETE FROM media_refs WHERE media = ? AND message = ?",
                        vec![media.clone().into(), message.into()],
                    ))
                    .await?
                    .rows_affected();
                let last = removed == 1 && count(&txn, &media, None).await? == 0;
                if last {
                    txn.execute_raw(stmt(
                        "INSERT INTO media_refs (media, message) VALUES (?, ?)",
                        vec![media.into(), DELETING.into()],
                    ))
                    .await?;
                }
                txn.commit().await?;
                Ok::<_, DbErr>(last)
            };
            run.await.map_err(|e| failed("letting a file go", e))
        }
        .boxed()
    }

    fn unhold(&self, media: &str, message: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let (this, media, message) = (self.clone(), media.to_owned(), message.to_owned());
        async move {
            let _writer = this.inner.writer().await;
            this.inner
                .db
                .execute_raw(stmt(
                    "DELETE FROM media_refs WHERE media = ? AND message = ?",
                    vec![media.into(), message.into()],
                ))
                .await
                .map_err(|e| failed("dropping a send's note", e))?;
            Ok(())
        }
        .boxed()
    }

    fn forget(&self, media: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let (this, media) = (self.clone(), media.to_owned());
        async move {
            let _writer = this.inner.writer().await;
            this.inner
                .db
                .execute_raw(stmt(
                    "DELETE FROM media_refs WHERE media = ?",
                    vec![media.into()],
                ))
                .await
                .map_err(|e| failed("forgetting a deleted file", e))?;
            Ok(())
        }
        .boxed()
    }
}
