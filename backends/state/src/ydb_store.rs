//! The native YDB adapter: `ydb://HOST[:PORT]/DATABASE?prefix=gosling`.
//!
//! Every design table is one YDB table `PREFIX/NAME` with the columns `pk`, `sk` (the
//! partition and sort key values, `""` when a table has no sort key), `row_version`, `doc`
//! (the item as `Json` text, so numbers round-trip exactly) and one `Utf8` column per indexed
//! attribute, with a synchronous global index on it.
//!
//! A transaction is one serializable interactive transaction of the Query service: one
//! query reads the current `row_version` of every key the writes touch, the expectations are
//! checked here, and one query deletes, upserts and commits. YDB's optimistic locks make that
//! query fail (ABORTED) when another writer changed a row read, and the SDK's retry loop then
//! runs the attempt again — which now sees the other write and reports a
//! [`StateError::Conflict`]. Reads run as snapshot read-only transactions, retried as a
//! whole; rows are collected from every result set, so an empty answer is no rows.
//!
//! The statements are built by [`Layout`] (pure, unit-tested without a server); only
//! [`YdbStore`] talks to YDB.

use crate::error::{Result, StateError};
use crate::model::Table;
use crate::store::{show_key, Doc, Item, StateStore, Write};
use async_trait::async_trait;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use ydb::{closure, QueryClient, Transaction, TxMode, Value, YdbOrCustomerError};

/// A future behind a pointer, whose body is compiled in this crate only.
///
/// The ydb SDK's query futures are about 130 type-layout queries deep (the SDK raises its
/// own `recursion_limit` for them, and so does this crate). A plain `async fn` that
/// awaits them can be inlined into a calling crate in release builds, which then
/// instantiates the SDK's futures itself and stops with "queries overflow the depth
/// limit" (issue 10: `cargo install --path gosling` failed). The public entry points
/// that are not already behind `dyn StateStore` — [`YdbStore::connect`] and
/// [`YdbStore::ensure_tables`] — therefore return a boxed future and are never inlined,
/// so no crate above this one needs a raised limit.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A table, partition key and sort key (`""` when the table has none).
pub(crate) type Key = (Table, String, String);

/// A YQL statement: its text (starting with the `DECLARE` of every parameter) and the
/// parameter values.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    /// The YQL text.
    pub text: String,
    /// `$name` → value.
    pub params: Vec<(String, Value)>,
    /// Where the declarations end in `text`.
    declared: usize,
}

impl Statement {
    fn new() -> Statement {
        Statement {
            text: String::new(),
            params: Vec::new(),
            declared: 0,
        }
    }

    /// Declares a parameter of YQL type `ty` (after the earlier ones) and keeps its value.
    fn param(&mut self, name: &str, ty: &str, value: Value) {
        let decl = format!("DECLARE ${name} AS {ty};\n");
        self.text.insert_str(self.declared, &decl);
        self.declared += decl.len();
        self.params.push((format!("${name}"), value));
    }

    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn params_map(&self) -> HashMap<String, Value> {
        self.params.iter().cloned().collect()
    }
}

/// Where the tables are and the statements over them; no connection needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

const KEY_TYPE: &str = "Struct<pk:Utf8,sk:Utf8>";

impl Layout {
    /// Tables under `prefix` (a relative path inside the database: letters, digits, `_`, `-`,
    /// segments separated by `/`).
    pub fn new(prefix: &str) -> Result<Layout> {
        let ok = !prefix.is_empty()
            && prefix.split('/').all(|seg| {
                !seg.is_empty()
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if !ok {
            return Err(StateError::Invalid(format!(
                "YDB table prefix `{prefix}`: use letters, digits, `_` and `-`, segments \
                 separated by `/`"
            )));
        }
        Ok(Layout {
            prefix: prefix.to_string(),
        })
    }

    /// The table's path, quoted for YQL.
    pub fn path(&self, table: Table) -> String {
        format!("`{}/{}`", self.prefix, table.name())
    }

    /// `CREATE TABLE IF NOT EXISTS` for one table.
    pub fn create_table(&self, table: Table) -> String {
        let mut cols = vec![
            "pk Utf8 NOT NULL".to_string(),
            "sk Utf8 NOT NULL".to_string(),
            "row_version Uint64".to_string(),
            "doc Json".to_string(),
        ];
        cols.extend(table.indexed().iter().map(|a| format!("{a} Utf8")));
        cols.push("PRIMARY KEY (pk, sk)".into());
        cols.extend(
            table
                .indexed()
                .iter()
                .map(|a| format!("INDEX idx_{a} GLOBAL SYNC ON ({a})")),
        );
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\n    {}\n);",
            self.path(table),
            cols.join(",\n    ")
        )
    }

    /// One item by key.
    pub fn get(&self, table: Table, pk: &str, sk: Option<&str>) -> Statement {
        let mut s = Statement::new();
        s.line(&format!(
            "SELECT row_version, doc FROM {} WHERE pk = $pk AND sk = $sk;",
            self.path(table)
        ));
        s.param("pk", "Utf8", Value::Text(pk.into()));
        s.param("sk", "Utf8", Value::Text(sk.unwrap_or_default().into()));
        s
    }

    /// Every item, by key.
    pub fn scan(&self, table: Table) -> Statement {
        let mut s = Statement::new();
        s.line(&format!(
            "SELECT row_version, doc FROM {} ORDER BY pk, sk;",
            self.path(table)
        ));
        s
    }

    /// One partition, by sort key.
    pub fn query(&self, table: Table, pk: &str) -> Statement {
        let mut s = Statement::new();
        s.line(&format!(
            "SELECT row_version, doc FROM {} WHERE pk = $pk ORDER BY sk;",
            self.path(table)
        ));
        s.param("pk", "Utf8", Value::Text(pk.into()));
        s
    }

    /// Items whose indexed attribute equals `value`, through the attribute's index.
    pub fn query_index(&self, table: Table, attr: &str, value: &str) -> Result<Statement> {
        if !table.indexed().contains(&attr) {
            return Err(StateError::Invalid(format!(
                "{table} has no index on `{attr}`"
            )));
        }
        let mut s = Statement::new();
        s.line(&format!(
            "SELECT row_version, doc FROM {} VIEW idx_{attr} WHERE {attr} = $value ORDER BY pk, sk;",
            self.path(table)
        ));
        s.param("value", "Utf8", Value::Text(value.into()));
        Ok(s)
    }

    /// The current `row_version` of every key, as rows `(tbl, pk, sk, row_version)`.
    pub fn read_versions(&self, keys: &BTreeSet<Key>) -> Result<Statement> {
        let mut s = Statement::new();
        let mut selects = Vec::new();
        for (i, (table, rows)) in group_by_table(keys).into_iter().enumerate() {
            s.param(
                &format!("keys{i}"),
                &format!("List<{KEY_TYPE}>"),
                list(rows)?,
            );
            selects.push(format!(
                "SELECT \"{table}\"u AS tbl, t.pk AS pk, t.sk AS sk, t.row_version AS row_version\n\
                 FROM AS_TABLE($keys{i}) AS k\n\
                 INNER JOIN {} AS t ON t.pk = k.pk AND t.sk = k.sk",
                self.path(table)
            ));
        }
        s.line(&format!("{};", selects.join("\nUNION ALL\n")));
        Ok(s)
    }

    /// The deletes and upserts of a resolved transaction (`None` when there is nothing to
    /// write). A key is either deleted or upserted, never both, and each table's `DELETE ON`
    /// comes before its `UPSERT` (older YDB versions refuse a `DELETE` on a table already
    /// changed in the same transaction).
    pub fn write(&self, effects: &Effects) -> Result<Option<Statement>> {
        let mut dels: BTreeMap<Table, Vec<Value>> = BTreeMap::new();
        for (table, pk, sk) in &effects.deletes {
            dels.entry(*table).or_default().push(key_struct(pk, sk));
        }
        let mut puts: BTreeMap<Table, Vec<Value>> = BTreeMap::new();
        for ((table, pk, sk), (version, doc)) in &effects.puts {
            let row = row_struct(*table, pk, sk, *version, doc);
            puts.entry(*table).or_default().push(row);
        }
        let tables: BTreeSet<Table> = puts.keys().chain(dels.keys()).copied().collect();
        let mut s = Statement::new();
        for (i, table) in tables.into_iter().enumerate() {
            if let Some(rows) = dels.remove(&table) {
                let name = format!("del{i}");
                s.param(&name, &format!("List<{KEY_TYPE}>"), list(rows)?);
                s.line(&format!(
                    "DELETE FROM {} ON SELECT * FROM AS_TABLE(${name});",
                    self.path(table)
                ));
            }
            if let Some(rows) = puts.remove(&table) {
                let name = format!("put{i}");
                s.param(&name, &format!("List<{}>", row_type(table)), list(rows)?);
                s.line(&format!(
                    "UPSERT INTO {} SELECT * FROM AS_TABLE(${name});",
                    self.path(table)
                ));
            }
        }
        Ok((!s.params.is_empty()).then_some(s))
    }
}

fn group_by_table(keys: &BTreeSet<Key>) -> BTreeMap<Table, Vec<Value>> {
    let mut out: BTreeMap<Table, Vec<Value>> = BTreeMap::new();
    for (t, pk, sk) in keys {
        out.entry(*t).or_default().push(key_struct(pk, sk));
    }
    out
}

fn key_struct(pk: &str, sk: &str) -> Value {
    Value::struct_from_fields(vec![
        ("pk".into(), Value::Text(pk.into())),
        ("sk".into(), Value::Text(sk.into())),
    ])
}

fn row_type(table: Table) -> String {
    let mut fields = vec![
        "pk:Utf8".to_string(),
        "sk:Utf8".into(),
        "row_version:Uint64".into(),
        "doc:Json".into(),
    ];
    fields.extend(table.indexed().iter().map(|a| format!("{a}:Utf8?")));
    format!("Struct<{}>", fields.join(","))
}

fn row_struct(table: Table, pk: &str, sk: &str, version: u64, doc: &Doc) -> Value {
    let mut fields = vec![
        ("pk".to_string(), Value::Text(pk.into())),
        ("sk".to_string(), Value::Text(sk.into())),
        ("row_version".to_string(), Value::Uint64(version)),
        (
            "doc".to_string(),
            Value::Json(Json::Object(doc.clone()).to_string()),
        ),
    ];
    for attr in table.indexed() {
        let v = doc.get(*attr).and_then(Json::as_str).map(str::to_string);
        fields.push((attr.to_string(), Value::from(v)));
    }
    Value::struct_from_fields(fields)
}

/// A list parameter; never empty (statements only declare lists they fill).
fn list(rows: Vec<Value>) -> Result<Value> {
    let example = rows.first().cloned().unwrap_or(Value::Null);
    Value::list_from(example, rows)
        .map_err(|e| StateError::Invalid(format!("YDB list parameter: {}", explain(&e))))
}

/// What a transaction does once its expectations held: the final state of every key it
/// touches.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Effects {
    /// Keys written, with their new version and item.
    pub puts: BTreeMap<Key, (u64, Doc)>,
    /// Keys deleted.
    pub deletes: BTreeSet<Key>,
}

/// The key a write touches.
pub(crate) fn write_key(w: &Write) -> Result<Key> {
    let (pk, sk) = w.key()?;
    Ok((w.table(), pk, sk.unwrap_or_default()))
}

/// Checks the writes, in order, against the versions found (absent keys are not in
/// `found`), exactly as the embedded store does, and returns what to write — or the
/// [`StateError::Conflict`] of the first expectation that does not hold.
pub fn resolve(writes: &[Write], found: &BTreeMap<Key, u64>) -> Result<Effects> {
    let mut now: BTreeMap<Key, Option<u64>> = BTreeMap::new();
    let mut effects = Effects::default();
    for w in writes {
        let key = write_key(w)?;
        let current = match now.get(&key) {
            Some(v) => *v,
            None => found.get(&key).copied(),
        };
        if !w.expect().holds(current) {
            let sk = (!key.2.is_empty()).then_some(key.2.as_str());
            return Err(StateError::Conflict {
                table: key.0,
                key: show_key(&key.1, sk),
            });
        }
        match w {
            Write::Put { doc, .. } => {
                let version = w.new_version()?;
                now.insert(key.clone(), Some(version));
                effects.deletes.remove(&key);
                effects.puts.insert(key, (version, doc.clone()));
            }
            Write::Delete { .. } => {
                now.insert(key.clone(), None);
                effects.puts.remove(&key);
                effects.deletes.insert(key);
            }
        }
    }
    Ok(effects)
}

/// How the client authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials (a local YDB).
    Anonymous,
    /// The cloud's metadata service (a VM or function with a service account).
    Metadata,
    /// A service account key file (JSON).
    ServiceAccountKeyFile(String),
    /// An IAM or OAuth token.
    Token(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Metadata => f.write_str("Metadata"),
            Auth::ServiceAccountKeyFile(p) => write!(f, "ServiceAccountKeyFile({p})"),
            Auth::Token(_) => f.write_str("Token([redacted])"),
        }
    }
}

impl Auth {
    /// Which credentials, in words (never the secret itself).
    pub fn describe(&self) -> String {
        match self {
            Auth::Anonymous => "anonymous credentials".into(),
            Auth::Metadata => "a token from the cloud metadata service (outside Yandex Cloud, set \
                 YDB_ACCESS_TOKEN_CREDENTIALS, YDB_SERVICE_ACCOUNT_KEY_FILE_CREDENTIALS or \
                 YDB_ANONYMOUS_CREDENTIALS=1)"
                .into(),
            Auth::ServiceAccountKeyFile(p) => format!("the service account key {p}"),
            Auth::Token(_) => "the token in YDB_ACCESS_TOKEN_CREDENTIALS".into(),
        }
    }

    /// The YDB SDKs' environment variables, in their order of precedence:
    /// `YDB_SERVICE_ACCOUNT_KEY_FILE_CREDENTIALS`, `YDB_ANONYMOUS_CREDENTIALS=1`,
    /// `YDB_METADATA_CREDENTIALS=1`, `YDB_ACCESS_TOKEN_CREDENTIALS`; without any, the
    /// metadata service over TLS and anonymous access over plain gRPC (a local YDB).
    pub fn from_env(var: impl Fn(&str) -> Option<String>, secure: bool) -> Auth {
        if let Some(path) = var("YDB_SERVICE_ACCOUNT_KEY_FILE_CREDENTIALS") {
            return Auth::ServiceAccountKeyFile(path);
        }
        if var("YDB_ANONYMOUS_CREDENTIALS").as_deref() == Some("1") {
            return Auth::Anonymous;
        }
        if var("YDB_METADATA_CREDENTIALS").as_deref() == Some("1") {
            return Auth::Metadata;
        }
        if let Some(token) = var("YDB_ACCESS_TOKEN_CREDENTIALS") {
            return Auth::Token(token);
        }
        if secure {
            Auth::Metadata
        } else {
            Auth::Anonymous
        }
    }
}

/// A parsed `ydb://` URL.
#[derive(Clone, Debug, PartialEq)]
pub struct YdbUrl {
    /// `grpcs://HOST:PORT` or `grpc://HOST:PORT`.
    pub endpoint: String,
    /// TLS (`grpcs`).
    pub secure: bool,
    /// The database path (`/local`, `/ru-central1/b1g…/etn…`).
    pub database: String,
    /// Tables live under `DATABASE/PREFIX/`.
    pub layout: Layout,
    /// Limit on connecting (discovery) and on each call.
    pub timeout: Duration,
    /// Whether missing tables are created.
    pub create_tables: bool,
    /// A CA certificate file for TLS (self-signed installations).
    pub ca_certificate: Option<String>,
}

/// The parameters a `ydb://` URL accepts.
pub const URL_PARAMS: &[&str] = &[
    "secure",
    "prefix",
    "timeout",
    "create_tables",
    "ca_certificate",
];

impl YdbUrl {
    /// Reads `ydb://HOST[:PORT]/DATABASE?secure=true&prefix=gosling&timeout=10&…` given
    /// the part after `ydb://` up to `?` and the query parameters. TLS is on unless
    /// `secure=false`; the port defaults to 2135 with TLS and 2136 without.
    pub fn parse(url: &str, rest: &str, query: &HashMap<String, String>) -> Result<YdbUrl> {
        let bad = |reason: String| StateError::BadUrl {
            url: url.into(),
            reason,
        };
        let flag = |name: &str, default: bool| crate::open::flag(url, query, name, default);
        let secure = flag("secure", true)?;
        let (host, database) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err(bad("no host (ydb://HOST[:PORT]/DATABASE)".into()));
        }
        let database = database.trim_matches('/');
        if database.is_empty() {
            return Err(bad(
                "no database path (ydb://HOST[:PORT]/DATABASE, e.g. /local)".into(),
            ));
        }
        let host = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_string()
        } else {
            format!("{host}:{}", if secure { 2135 } else { 2136 })
        };
        let timeout = match query.get("timeout") {
            None => Duration::from_secs(10),
            Some(t) => Duration::from_secs_f64(
                t.trim_end_matches('s')
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
                    .ok_or_else(|| bad(format!("`timeout` must be seconds, not `{t}`")))?,
            ),
        };
        let layout = Layout::new(query.get("prefix").map_or("gosling", String::as_str))
            .map_err(|e| bad(e.to_string()))?;
        Ok(YdbUrl {
            endpoint: format!("{}://{host}", if secure { "grpcs" } else { "grpc" }),
            secure,
            database: format!("/{database}"),
            layout,
            timeout,
            create_tables: flag("create_tables", true)?,
            ca_certificate: query.get("ca_certificate").cloned(),
        })
    }

    /// The connection string of the YDB SDK.
    pub fn connection_string(&self) -> String {
        let mut s = format!(
            "{}?database={}",
            self.endpoint,
            url::form_urlencoded::byte_serialize(self.database.as_bytes()).collect::<String>()
        );
        if let Some(ca) = &self.ca_certificate {
            s.push_str("&ca_certificate=");
            s.extend(url::form_urlencoded::byte_serialize(ca.as_bytes()));
        }
        s
    }
}

/// A transaction (two queries and the retries after broken locks) may take this many times
/// the URL's `timeout`.
const TRANSACTION_TIMEOUTS: u32 = 3;

/// A state store on YDB.
pub struct YdbStore {
    client: ydb::Client,
    url: YdbUrl,
    read_only: bool,
}

impl std::fmt::Debug for YdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "YdbStore({})", self.describe())
    }
}

fn remote(operation: impl Into<String>, message: impl Into<String>) -> StateError {
    StateError::Remote {
        service: "YDB",
        operation: operation.into(),
        message: message.into(),
    }
}

/// A YDB error in words: the server's status and issues, or the transport's error.
pub(crate) fn explain(e: &ydb::YdbError) -> String {
    use ydb::YdbError as E;
    fn issues(out: &mut Vec<String>, list: &[ydb::YdbIssue]) {
        for i in list {
            if !i.message.is_empty() {
                out.push(i.message.clone());
            }
            issues(out, &i.issues);
        }
    }
    match e {
        E::Custom(s) | E::Convert(s) | E::InternalError(s) | E::Transport(s) => s.clone(),
        E::TransportDial(t) => {
            let mut msg = format!("cannot connect: {t}");
            let mut src = std::error::Error::source(t.as_ref());
            while let Some(inner) = src {
                msg.push_str(&format!(": {inner}"));
                src = inner.source();
            }
            msg
        }
        E::TransportGRPCStatus(st) => format!("gRPC {:?}: {}", st.code(), st.message()),
        E::YdbStatusError(st) => {
            let status = st
                .operation_status()
                .map_or_else(|_| st.operation_status.to_string(), |c| format!("{c:?}"));
            let mut parts = vec![status];
            if !st.message.is_empty() {
                parts.push(st.message.clone());
            }
            issues(&mut parts, &st.issues);
            parts.join(": ")
        }
        E::DeadlineExceeded => "deadline exceeded".into(),
        other => format!("{other:?}"),
    }
}

fn explain_outer(e: &YdbOrCustomerError) -> String {
    match e {
        YdbOrCustomerError::YDB(e) => explain(e),
        other => other.to_string(),
    }
}

/// A number from a result column (plain or optional).
pub(crate) fn uint(v: Value) -> Option<u64> {
    match v.to_option()? {
        Value::Uint64(n) => Some(n),
        Value::Uint32(n) => Some(n.into()),
        Value::Int64(n) => u64::try_from(n).ok(),
        _ => None,
    }
}

/// Text from a result column (`Utf8`, `Json` or UTF-8 `String`, plain or optional).
pub(crate) fn text(v: Value) -> Option<String> {
    match v.to_option()? {
        Value::Text(s) | Value::Json(s) | Value::JsonDocument(s) => Some(s),
        Value::Bytes(b) => String::from_utf8(Vec::<u8>::from(b)).ok(),
        _ => None,
    }
}

fn column(row: &mut ydb::Row, name: &str) -> Result<Value> {
    row.remove_field_by_name(name)
        .map_err(|e| remote(format!("reading column `{name}`"), explain(&e)))
}

impl YdbStore {
    /// Connects (waiting for discovery up to the URL's timeout) with `auth`.
    ///
    /// Boxed and never inlined: see [`BoxFuture`].
    #[inline(never)]
    pub fn connect(
        url: YdbUrl,
        auth: Auth,
        read_only: bool,
    ) -> BoxFuture<'static, Result<YdbStore>> {
        Box::pin(Self::connect_inner(url, auth, read_only))
    }

    async fn connect_inner(url: YdbUrl, auth: Auth, read_only: bool) -> Result<YdbStore> {
        let target = format!("{}{}", url.endpoint, url.database);
        let builder = ydb::ClientBuilder::new_from_connection_string(url.connection_string())
            .map_err(|e| remote(format!("connecting to {target}"), explain(&e)))?;
        let how = auth.describe();
        let builder = match auth {
            Auth::Anonymous => builder.with_credentials(ydb::AnonymousCredentials::new()),
            Auth::Metadata => builder.with_credentials(ydb::MetadataUrlCredentials::new()),
            Auth::Token(t) => builder.with_credentials(ydb::AccessTokenCredentials::from(t)),
            Auth::ServiceAccountKeyFile(path) => builder.with_credentials(
                ydb::ServiceAccountCredentials::from_file(&path).map_err(|e| {
                    remote(
                        format!("reading the service account key {path}"),
                        explain(&e),
                    )
                })?,
            ),
        };
        // `build` returns once discovery and the first token succeeded.
        let client = match tokio::time::timeout(url.timeout, builder.build()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(remote(
                    format!("connecting to {target} with {how}"),
                    explain(&e),
                ))
            }
            Err(_) => {
                return Err(remote(
                    format!("connecting to {target} with {how}"),
                    format!(
                        "no answer within {:?} (is the endpoint right, and TLS on or off as \
                         `secure=` says?)",
                        url.timeout
                    ),
                ))
            }
        };
        Ok(YdbStore {
            client,
            url,
            read_only,
        })
    }

    /// Creates the tables that do not exist yet.
    ///
    /// Boxed and never inlined, like [`connect`](Self::connect): see [`BoxFuture`].
    #[inline(never)]
    pub fn ensure_tables(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            for table in Table::ALL {
                let ddl = self.url.layout.create_table(table);
                self.queries()
                    .exec(ddl)
                    .timeout(self.url.timeout)
                    .await
                    .map_err(|e| remote(format!("CREATE TABLE {table}"), explain(&e)))?;
            }
            Ok(())
        })
    }

    fn queries(&self) -> QueryClient {
        self.client.query_client()
    }

    /// Runs a read-only statement (snapshot isolation, retried as a whole) and returns its
    /// items.
    async fn items(&self, table: Table, st: Statement, operation: &str) -> Result<Vec<Item>> {
        let outcome: std::result::Result<Result<Vec<Item>>, YdbOrCustomerError> = self
            .queries()
            .retry_tx(closure!([&st], async |tx: &mut Transaction| {
                let rows = collect(tx, st, true).await?;
                Ok(rows.into_iter().map(|r| item_of(table, r)).collect())
            }))
            .with_mode(TxMode::SnapshotReadOnly)
            .idempotent(true)
            .timeout(self.url.timeout)
            .await;
        outcome.map_err(|e| remote(format!("{operation} {table}"), explain_outer(&e)))?
    }
}

/// Every row of every result set of `st` run in `tx` (a statement that returns nothing, or
/// whose result set is empty, gives no rows). With `commit`, the statement commits `tx`.
async fn collect(
    tx: &mut Transaction,
    st: &Statement,
    commit: bool,
) -> ydb::YdbResult<Vec<ydb::Row>> {
    let mut stream = tx
        .query(st.text.clone())
        .params(st.params_map())
        .with_commit(commit)
        .await?;
    let mut rows = Vec::new();
    while let Some(set) = stream.next_result_set().await? {
        rows.extend(set.rows());
    }
    stream.close().await?;
    Ok(rows)
}

/// An item from a `row_version, doc` row.
fn item_of(table: Table, mut row: ydb::Row) -> Result<Item> {
    let version = uint(column(&mut row, "row_version")?);
    let doc = text(column(&mut row, "doc")?);
    match (version, doc) {
        (Some(v), Some(d)) => Item::from_json(table, v, &d),
        _ => Err(StateError::Corrupt {
            table,
            reason: "a row without row_version or doc".into(),
        }),
    }
}

/// A key and its version from a `tbl, pk, sk, row_version` row.
fn version_of(mut row: ydb::Row) -> Result<(Key, u64)> {
    let tbl = text(column(&mut row, "tbl")?);
    let table = Table::ALL
        .into_iter()
        .find(|t| Some(t.name()) == tbl.as_deref());
    let pk = text(column(&mut row, "pk")?);
    let sk = text(column(&mut row, "sk")?);
    let version = uint(column(&mut row, "row_version")?);
    match (table, pk, sk, version) {
        (Some(t), Some(pk), Some(sk), Some(v)) => Ok(((t, pk, sk), v)),
        (Some(table), ..) => Err(StateError::Corrupt {
            table,
            reason: "a row without a key or row_version".into(),
        }),
        (None, ..) => Err(StateError::Invalid(format!(
            "YDB answered a row of an unknown table `{}`",
            tbl.unwrap_or_default()
        ))),
    }
}

#[async_trait]
impl StateStore for YdbStore {
    fn describe(&self) -> String {
        format!(
            "ydb://{}{} (tables under {})",
            self.url
                .endpoint
                .split_once("://")
                .map_or(self.url.endpoint.as_str(), |(_, h)| h),
            self.url.database,
            self.url.layout.prefix
        )
    }

    async fn get_item(&self, table: Table, pk: &str, sk: Option<&str>) -> Result<Option<Item>> {
        let st = self.url.layout.get(table, pk, sk);
        Ok(self.items(table, st, "GetItem").await?.pop())
    }

    async fn scan(&self, table: Table) -> Result<Vec<Item>> {
        self.items(table, self.url.layout.scan(table), "Scan").await
    }

    async fn query(&self, table: Table, pk: &str) -> Result<Vec<Item>> {
        self.items(table, self.url.layout.query(table, pk), "Query")
            .await
    }

    async fn query_index(&self, table: Table, attr: &str, value: &str) -> Result<Vec<Item>> {
        let st = self.url.layout.query_index(table, attr, value)?;
        self.items(table, st, "Query").await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<()> {
        if self.read_only {
            return Err(StateError::ReadOnly);
        }
        if writes.is_empty() {
            return Ok(());
        }
        // Invalid writes are refused before anything is sent.
        let keys: BTreeSet<Key> = writes.iter().map(write_key).collect::<Result<_>>()?;
        for w in &writes {
            if let Write::Put { .. } = w {
                w.new_version()?;
            }
        }
        let read = self.url.layout.read_versions(&keys)?;
        let layout = &self.url.layout;
        // What the last attempt decided, kept outside the SDK's retry loop: a conflict or a
        // corrupt row is the answer even if ending the transaction then fails, and a failure
        // after the write was sent leaves its outcome unknown.
        let mut decided: Option<StateError> = None;
        let mut write_sent = false;
        let outcome: std::result::Result<(), YdbOrCustomerError> = self
            .queries()
            .retry_tx(closure!(
                [&read, &writes, &layout, &mut decided, &mut write_sent],
                async |tx: &mut Transaction| {
                    *decided = None;
                    *write_sent = false;
                    let rows = collect(tx, read, false).await?;
                    let found: Result<BTreeMap<Key, u64>> =
                        rows.into_iter().map(version_of).collect();
                    let write = found
                        .and_then(|found| resolve(writes, &found))
                        .and_then(|effects| layout.write(&effects));
                    match write {
                        Err(answer) => {
                            *decided = Some(answer);
                            // Dropping the transaction rolls it back too.
                            let _ = tx.rollback().await;
                        }
                        Ok(write) => {
                            if let Some(st) = write {
                                *write_sent = true;
                                // Committing with the write makes a broken optimistic lock
                                // (ABORTED) an error of this attempt, which the SDK retries;
                                // the retry then sees the other write.
                                collect(tx, &st, true).await?;
                            }
                        }
                    }
                    Ok(())
                }
            ))
            .timeout(self.url.timeout * TRANSACTION_TIMEOUTS)
            .await;
        match (decided, outcome) {
            (Some(answer), _) => Err(answer),
            (None, Ok(())) => Ok(()),
            (None, Err(e)) => {
                let mut message = explain_outer(&e);
                if write_sent {
                    message.push_str(
                        " (the write was sent, so it may or may not have been applied: read \
                         the state again before retrying)",
                    );
                }
                Err(remote(
                    format!("transaction of {} writes", writes.len()),
                    message,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests;
