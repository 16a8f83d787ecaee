//! [`MediaRefs`] on SQLite: the `media_refs` table, one row per file and
//! message that carries it.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sea_orm::{ConnectionTrait, TransactionTrait};

use super::{SqliteStore, failed, stmt};
use crate::{MediaRefs, StoreError};

impl MediaRefs for SqliteStore {
    fn hold(&self, media: &str, message: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let (this, media, message) = (self.clone(), media.to_owned(), message.to_owned());
        async move {
            let _writer = this.inner.write.lock().await;
            this.inner
                .db
                .execute_raw(stmt(
                    "INSERT OR IGNORE INTO media_refs (media, message) VALUES (?, ?)",
                    vec![media.into(), message.into()],
                ))
                .await
                .map_err(|e| failed("noting a file's message", e))?;
            Ok(())
        }
        .boxed()
    }

    fn release(&self, media: &str, message: &str) -> BoxFuture<'static, Result<bool, StoreError>> {
        let (this, media, message) = (self.clone(), media.to_owned(), message.to_owned());
        async move {
            let _writer = this.inner.write.lock().await;
            let run = async {
                let txn = this.inner.db.begin().await?;
                let removed = txn
                    .execute_raw(stmt(
                        "DELETE FROM media_refs WHERE media = ? AND message = ?",
                        vec![media.clone().into(), message.into()],
                    ))
                    .await?
                    .rows_affected();
                let left = txn
                    .query_one_raw(stmt(
                        "SELECT COUNT(*) FROM media_refs WHERE media = ?",
                        vec![media.into()],
                    ))
                    .await?
                    .map_or(Ok(0), |row| row.try_get_by_index::<i64>(0))?;
                txn.commit().await?;
                Ok::<_, sea_orm::DbErr>(removed == 1 && left == 0)
            };
            run.await.map_err(|e| failed("letting a file go", e))
        }
        .boxed()
    }
}
