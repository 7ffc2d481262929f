//! The embedded store: one SQLite file (under the Nest's `.gosling/` by default), one table
//! per design table holding each item as JSON with its key columns and `row_version`.
//! A transaction is one SQLite `BEGIN IMMEDIATE` transaction, so it is atomic across
//! processes too.

use crate::error::{Result, StateError};
use crate::model::Table;
use crate::store::{show_key, Item, StateStore, Write};
use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The embedded SQLite store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    read_only: bool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteStore({})", self.path.display())
    }
}

/// Bytes SQLite holds in this process, over all its connections (the embedded store's and
/// queue's page caches, each bounded by its `cache_size`, SQLite's default 2,000 KiB).
pub fn sqlite_memory_used() -> u64 {
    // SAFETY: sqlite3_memory_used only reads SQLite's own counter (thread-safe build).
    let used = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    used.max(0) as u64
}

impl SqliteStore {
    /// Opens (and creates, with its folder) the database at `path`.
    ///
    /// Read-only: nothing on disk is created or changed; a missing file reads as an empty
    /// store (so `gosling deploy --dry-run` of a first deployment writes nothing).
    pub fn open(path: &Path, read_only: bool) -> Result<SqliteStore> {
        let err = |source| StateError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn = if read_only {
            if path.exists() {
                Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(err)?
            } else {
                let c = Connection::open_in_memory().map_err(err)?;
                create_schema(&c).map_err(err)?;
                c
            }
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            let c = Connection::open(path).map_err(err)?;
            create_schema(&c).map_err(err)?;
            c
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            read_only,
        })
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (its own
        // transaction is rolled back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with the connection. SQLite calls block (on the lock, on another process's
    /// transaction for up to the busy timeout), so on a multi-threaded runtime the thread is
    /// first handed over to blocking work: the runtime's other tasks (a webhook to
    /// acknowledge, a heartbeat) go on on its other threads meanwhile.
    fn blocking<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let run = || f(&mut self.lock());
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(run)
            }
            _ => run(),
        }
    }

    fn rows(&self, sql: &str, args: &[&dyn rusqlite::ToSql], table: Table) -> Result<Vec<Item>> {
        self.blocking(|conn| {
            let mut stmt = conn.prepare_cached(sql).map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(args, |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .map_err(|e| self.err(e))?;
            let mut out = Vec::new();
            for row in rows {
                let (version, text) = row.map_err(|e| self.err(e))?;
                out.push(Item::from_json(table, version as u64, &text)?);
            }
            Ok(out)
        })
    }
}

fn create_schema(c: &Connection) -> rusqlite::Result<()> {
    let mut sql = String::from("PRAGMA user_version = 1;\n");
    for t in Table::ALL {
        sql.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS \"{t}\" (pk TEXT NOT NULL, sk TEXT NOT NULL DEFAULT '', \
             row_version INTEGER NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (pk, sk)) WITHOUT ROWID;\n"
        ));
        for attr in t.indexed() {
            sql.push_str(&format!(
                "CREATE INDEX IF NOT EXISTS \"{t}_{attr}\" ON \"{t}\" (json_extract(doc, '$.{attr}'));\n"
            ));
        }
    }
    c.execute_batch(&sql)
}

#[async_trait]
impl StateStore for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    async fn get_item(&self, table: Table, pk: &str, sk: Option<&str>) -> Result<Option<Item>> {
        let row: Option<(i64, String)> = self.blocking(|conn| {
            conn.prepare_cached(&format!(
                "SELECT row_version, doc FROM \"{table}\" WHERE pk = ?1 AND sk = ?2"
            ))
            .and_then(|mut s| {
                s.query_row(params![pk, sk.unwrap_or("")], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            })
            .map_err(|e| self.err(e))
        })?;
        row.map(|(v, text)| Item::from_json(table, v as u64, &text))
            .transpose()
    }

    async fn scan(&self, table: Table) -> Result<Vec<Item>> {
        self.rows(
            &format!("SELECT row_version, doc FROM \"{table}\" ORDER BY pk, sk"),
            &[],
            table,
        )
    }

    async fn query(&self, table: Table, pk: &str) -> Result<Vec<Item>> {
        self.rows(
            &format!("SELECT row_version, doc FROM \"{table}\" WHERE pk = ?1 ORDER BY sk"),
            &[&pk],
            table,
        )
    }

    async fn query_index(&self, table: Table, attr: &str, value: &str) -> Result<Vec<Item>> {
        if !table.indexed().contains(&attr) {
            return Err(StateError::Invalid(format!(
                "{table} has no index on `{attr}`"
            )));
        }
        self.rows(
            &format!(
                "SELECT row_version, doc FROM \"{table}\" WHERE json_extract(doc, '$.{attr}') = ?1 ORDER BY pk, sk"
            ),
            &[&value],
            table,
        )
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<()> {
        if self.read_only {
            return Err(StateError::ReadOnly);
        }
        self.blocking(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.err(e))?;
            for w in &writes {
                let table = w.table();
                let (pk, sk) = w.key()?;
                let sk_col = sk.clone().unwrap_or_default();
                let found: Option<i64> = tx
                    .prepare_cached(&format!(
                        "SELECT row_version FROM \"{table}\" WHERE pk = ?1 AND sk = ?2"
                    ))
                    .and_then(|mut s| s.query_row(params![pk, sk_col], |r| r.get(0)).optional())
                    .map_err(|e| self.err(e))?;
                if !w.expect().holds(found.map(|f| f as u64)) {
                    // Dropping `tx` rolls everything back.
                    return Err(StateError::Conflict {
                        table,
                        key: show_key(&pk, sk.as_deref()),
                    });
                }
                match w {
                    Write::Put { doc, .. } => {
                        let version = w.new_version()? as i64;
                        let text = serde_json::to_string(&Value::Object(doc.clone()))
                            .map_err(|e| StateError::Invalid(e.to_string()))?;
                        tx.prepare_cached(&format!(
                            "INSERT OR REPLACE INTO \"{table}\" (pk, sk, row_version, doc) VALUES (?1, ?2, ?3, ?4)"
                        ))
                        .and_then(|mut s| s.execute(params![pk, sk_col, version, text]))
                        .map_err(|e| self.err(e))?;
                    }
                    Write::Delete { .. } => {
                        tx.prepare_cached(&format!(
                            "DELETE FROM \"{table}\" WHERE pk = ?1 AND sk = ?2"
                        ))
                        .and_then(|mut s| s.execute(params![pk, sk_col]))
                        .map_err(|e| self.err(e))?;
                    }
                }
            }
            tx.commit().map_err(|e| self.err(e))
        })
    }
}
