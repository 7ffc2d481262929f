//! The DynamoDB adapter: AWS DynamoDB, and YDB's DynamoDB-compatible Document API on Yandex
//! Cloud through an endpoint override.
//!
//! Each design table is a DynamoDB table `{prefix}_{table}` keyed as the design says
//! (`runners.id`, `eggs.name`, …, `runner_metrics.runner_id` + `timestamp`), with a GSI per
//! indexed attribute (`runners`: `egg_name-index`, `state-index`). Records are stored as
//! native attributes (maps and lists for JSON), so other tools can query them, plus the
//! number `row_version`. Conditional writes use `attribute_not_exists` / `row_version = :v`;
//! several writes go through `TransactWriteItems`.

use crate::error::{Result, StateError};
use crate::model::Table;
use crate::store::{key_of, show_key, Doc, Expect, Item, StateStore, Write};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, ScalarAttributeType, TableStatus,
    TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use serde_json::{Number, Value};
use std::collections::HashMap;

const ROW_VERSION: &str = "row_version";

type AttrMap = HashMap<String, AttributeValue>;
/// A condition expression with its attribute names and values.
type Cond = (String, HashMap<String, String>, AttrMap);
/// A page of items, or the error code and error.
type Page = std::result::Result<Vec<AttrMap>, (Option<String>, StateError)>;

/// Drains a Scan or Query paginator into pages, stopping at the first error (kept with
/// its error code, so `read_pages` can tell a missing table from a failure).
macro_rules! collect_pages {
    ($pages:expr, $what:expr) => {{
        let mut pages = $pages;
        let mut collected: Vec<Page> = Vec::new();
        while let Some(page) = pages.next().await {
            match page {
                Ok(p) => collected.push(Ok(p.items.unwrap_or_default())),
                Err(e) => {
                    collected.push(Err((e.code().map(str::to_string), remote($what, e))));
                    break;
                }
            }
        }
        collected
    }};
}

/// A state store on DynamoDB (or the YDB Document API).
#[derive(Debug)]
pub struct DynamoStore {
    client: Client,
    prefix: String,
    endpoint: Option<String>,
    read_only: bool,
    max_tx: usize,
}

fn remote(operation: String, e: impl std::error::Error) -> StateError {
    StateError::Remote {
        service: "DynamoDB",
        operation,
        message: DisplayErrorContext(e).to_string(),
    }
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> StateError {
    StateError::Invalid(format!("DynamoDB request: {e}"))
}

impl DynamoStore {
    /// A store over the tables `{prefix}_{table}` through `client`. `max_tx` is the most
    /// writes in one `TransactWriteItems` (100 on AWS, 25 on YDB).
    pub fn new(
        client: Client,
        prefix: &str,
        endpoint: Option<String>,
        read_only: bool,
        max_tx: usize,
    ) -> DynamoStore {
        DynamoStore {
            client,
            prefix: prefix.to_string(),
            endpoint,
            read_only,
            max_tx: max_tx.max(4),
        }
    }

    /// The DynamoDB table name of `table`.
    pub fn table_name(&self, table: Table) -> String {
        if self.prefix.is_empty() {
            table.name().to_string()
        } else {
            format!("{}_{}", self.prefix, table.name())
        }
    }

    /// Creates the tables that do not exist yet and waits until they are active.
    pub async fn ensure_tables(&self) -> Result<()> {
        let mut created = Vec::new();
        for table in Table::ALL {
            let name = self.table_name(table);
            match self.client.describe_table().table_name(&name).send().await {
                Ok(_) => continue,
                Err(e) if e.code() == Some("ResourceNotFoundException") => {}
                Err(e) => return Err(remote(format!("DescribeTable {name}"), e)),
            }
            let mut attrs = vec![table.partition_key()];
            let mut req = self
                .client
                .create_table()
                .table_name(&name)
                .billing_mode(BillingMode::PayPerRequest)
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(table.partition_key())
                        .key_type(KeyType::Hash)
                        .build()
                        .map_err(build_err)?,
                );
            if let Some(sk) = table.sort_key() {
                attrs.push(sk);
                req = req.key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(sk)
                        .key_type(KeyType::Range)
                        .build()
                        .map_err(build_err)?,
                );
            }
            for attr in table.indexed() {
                attrs.push(attr);
                req = req.global_secondary_indexes(
                    GlobalSecondaryIndex::builder()
                        .index_name(format!("{attr}-index"))
                        .key_schema(
                            KeySchemaElement::builder()
                                .attribute_name(*attr)
                                .key_type(KeyType::Hash)
                                .build()
                                .map_err(build_err)?,
                        )
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build()
                        .map_err(build_err)?,
                );
            }
            for attr in attrs {
                req = req.attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(attr)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(build_err)?,
                );
            }
            match req.send().await {
                Ok(_) => created.push(name),
                Err(e) if e.code() == Some("ResourceInUseException") => created.push(name),
                Err(e) => return Err(remote(format!("CreateTable {name}"), e)),
            }
        }
        for name in created {
            let mut delay = std::time::Duration::from_millis(50);
            for _ in 0..60 {
                let out = self
                    .client
                    .describe_table()
                    .table_name(&name)
                    .send()
                    .await
                    .map_err(|e| remote(format!("DescribeTable {name}"), e))?;
                if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                    break;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
        }
        Ok(())
    }

    fn key_map(&self, table: Table, pk: &str, sk: Option<&str>) -> HashMap<String, AttributeValue> {
        let mut key = HashMap::new();
        key.insert(
            table.partition_key().to_string(),
            AttributeValue::S(pk.to_string()),
        );
        if let (Some(attr), Some(sk)) = (table.sort_key(), sk) {
            key.insert(attr.to_string(), AttributeValue::S(sk.to_string()));
        }
        key
    }

    fn condition(table: Table, expect: Expect) -> Option<Cond> {
        match expect {
            Expect::Any => None,
            Expect::Absent => Some((
                "attribute_not_exists(#pk)".into(),
                HashMap::from([("#pk".to_string(), table.partition_key().to_string())]),
                HashMap::new(),
            )),
            Expect::Version(v) => Some((
                "#rv = :rv".into(),
                HashMap::from([("#rv".to_string(), ROW_VERSION.to_string())]),
                HashMap::from([(":rv".to_string(), AttributeValue::N(v.to_string()))]),
            )),
        }
    }

    fn conflict(&self, w: &Write) -> StateError {
        let (pk, sk) = w.key().unwrap_or_default();
        StateError::Conflict {
            table: w.table(),
            key: show_key(&pk, sk.as_deref()),
        }
    }

    async fn single(&self, w: Write) -> Result<()> {
        let table = w.table();
        let name = self.table_name(table);
        let result = match &w {
            Write::Put { doc, expect, .. } => {
                let cond = Self::condition(table, *expect);
                let mut req = self
                    .client
                    .put_item()
                    .table_name(&name)
                    .set_item(Some(to_item(doc, w.new_version()?)));
                if let Some((expr, names, values)) = cond {
                    req = req
                        .condition_expression(expr)
                        .set_expression_attribute_names(Some(names))
                        .set_expression_attribute_values((!values.is_empty()).then_some(values));
                }
                req.send().await.map(|_| ()).map_err(|e| {
                    (
                        e.code().map(str::to_string),
                        remote(format!("PutItem {name}"), e),
                    )
                })
            }
            Write::Delete { pk, sk, expect, .. } => {
                let cond = Self::condition(table, *expect);
                let mut req = self
                    .client
                    .delete_item()
                    .table_name(&name)
                    .set_key(Some(self.key_map(table, pk, sk.as_deref())));
                if let Some((expr, names, values)) = cond {
                    req = req
                        .condition_expression(expr)
                        .set_expression_attribute_names(Some(names))
                        .set_expression_attribute_values((!values.is_empty()).then_some(values));
                }
                req.send().await.map(|_| ()).map_err(|e| {
                    (
                        e.code().map(str::to_string),
                        remote(format!("DeleteItem {name}"), e),
                    )
                })
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err((Some(code), _)) if code == "ConditionalCheckFailedException" => {
                Err(self.conflict(&w))
            }
            Err((_, e)) => Err(e),
        }
    }

    async fn read_pages(&self, table: Table, pages: Vec<Page>) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        for page in pages {
            match page {
                Ok(items) => {
                    for i in items {
                        out.push(from_item(table, i)?);
                    }
                }
                Err((Some(code), _)) if code == "ResourceNotFoundException" => {
                    return Ok(Vec::new())
                }
                Err((_, e)) => return Err(e),
            }
        }
        sort_items(table, &mut out);
        Ok(out)
    }
}

fn sort_items(table: Table, items: &mut [Item]) {
    items.sort_by_cached_key(|i| key_of(table, &i.doc).unwrap_or_default());
}

/// JSON → DynamoDB attribute value.
pub fn to_attr(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_attr).collect()),
        Value::Object(m) => {
            AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect())
        }
    }
}

/// DynamoDB attribute value → JSON.
pub fn from_attr(a: &AttributeValue) -> Value {
    match a {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => number(n),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::L(l) => Value::Array(l.iter().map(from_attr).collect()),
        AttributeValue::M(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), from_attr(&m[k])))
                    .collect(),
            )
        }
        AttributeValue::Ss(v) => Value::Array(v.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(v) => Value::Array(v.iter().map(|n| number(n)).collect()),
        _ => Value::Null,
    }
}

fn number(n: &str) -> Value {
    if let Ok(i) = n.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Ok(u) = n.parse::<u64>() {
        return Value::Number(u.into());
    }
    n.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(n.to_string()))
}

/// A record as a DynamoDB item: top-level nulls are left out (a GSI key may not be NULL).
fn to_item(doc: &Doc, version: u64) -> HashMap<String, AttributeValue> {
    let mut item: HashMap<String, AttributeValue> = doc
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), to_attr(v)))
        .collect();
    item.insert(ROW_VERSION.into(), AttributeValue::N(version.to_string()));
    item
}

fn from_item(table: Table, mut item: HashMap<String, AttributeValue>) -> Result<Item> {
    let version = match item.remove(ROW_VERSION) {
        Some(AttributeValue::N(n)) => n.parse::<u64>().ok(),
        _ => None,
    }
    .ok_or_else(|| StateError::Corrupt {
        table,
        reason: format!("an item has no numeric `{ROW_VERSION}`"),
    })?;
    let mut keys: Vec<String> = item.keys().cloned().collect();
    keys.sort();
    let doc: Doc = keys
        .into_iter()
        .map(|k| {
            let v = from_attr(&item[&k]);
            (k, v)
        })
        .collect();
    Ok(Item { doc, version })
}

#[async_trait]
impl StateStore for DynamoStore {
    fn describe(&self) -> String {
        match &self.endpoint {
            Some(ep) => format!("dynamodb://{}?endpoint={ep}", self.prefix),
            None => format!("dynamodb://{}", self.prefix),
        }
    }

    fn max_transaction_writes(&self) -> Option<usize> {
        Some(self.max_tx)
    }

    async fn get_item(&self, table: Table, pk: &str, sk: Option<&str>) -> Result<Option<Item>> {
        let name = self.table_name(table);
        match self
            .client
            .get_item()
            .table_name(&name)
            .set_key(Some(self.key_map(table, pk, sk)))
            .consistent_read(true)
            .send()
            .await
        {
            Ok(out) => out.item.map(|i| from_item(table, i)).transpose(),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(remote(format!("GetItem {name}"), e)),
        }
    }

    async fn scan(&self, table: Table) -> Result<Vec<Item>> {
        let name = self.table_name(table);
        let pages = self
            .client
            .scan()
            .table_name(&name)
            .consistent_read(true)
            .into_paginator()
            .send();
        let collected = collect_pages!(pages, format!("Scan {name}"));
        self.read_pages(table, collected).await
    }

    async fn query(&self, table: Table, pk: &str) -> Result<Vec<Item>> {
        let name = self.table_name(table);
        let pages = self
            .client
            .query()
            .table_name(&name)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", table.partition_key())
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
            .into_paginator()
            .send();
        let collected = collect_pages!(pages, format!("Query {name}"));
        self.read_pages(table, collected).await
    }

    async fn query_index(&self, table: Table, attr: &str, value: &str) -> Result<Vec<Item>> {
        if !table.indexed().contains(&attr) {
            return Err(StateError::Invalid(format!(
                "{table} has no index on `{attr}`"
            )));
        }
        let name = self.table_name(table);
        let pages = self
            .client
            .query()
            .table_name(&name)
            .index_name(format!("{attr}-index"))
            .key_condition_expression("#a = :v")
            .expression_attribute_names("#a", attr)
            .expression_attribute_values(":v", AttributeValue::S(value.to_string()))
            .into_paginator()
            .send();
        let collected = collect_pages!(pages, format!("Query {name} {attr}-index"));
        self.read_pages(table, collected).await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<()> {
        if self.read_only {
            return Err(StateError::ReadOnly);
        }
        if writes.is_empty() {
            return Ok(());
        }
        if writes.len() > self.max_tx {
            return Err(StateError::Invalid(format!(
                "{} writes in one transaction; this store takes at most {}",
                writes.len(),
                self.max_tx
            )));
        }
        if writes.len() == 1 {
            let w = writes.into_iter().next().expect("one write");
            return self.single(w).await;
        }
        let mut items = Vec::with_capacity(writes.len());
        for w in &writes {
            let table = w.table();
            let name = self.table_name(table);
            let item = match w {
                Write::Put { doc, expect, .. } => {
                    let mut b = Put::builder()
                        .table_name(&name)
                        .set_item(Some(to_item(doc, w.new_version()?)));
                    if let Some((expr, names, values)) = Self::condition(table, *expect) {
                        b = b
                            .condition_expression(expr)
                            .set_expression_attribute_names(Some(names))
                            .set_expression_attribute_values(
                                (!values.is_empty()).then_some(values),
                            );
                    }
                    TransactWriteItem::builder()
                        .put(b.build().map_err(build_err)?)
                        .build()
                }
                Write::Delete { pk, sk, expect, .. } => {
                    let mut b = Delete::builder()
                        .table_name(&name)
                        .set_key(Some(self.key_map(table, pk, sk.as_deref())));
                    if let Some((expr, names, values)) = Self::condition(table, *expect) {
                        b = b
                            .condition_expression(expr)
                            .set_expression_attribute_names(Some(names))
                            .set_expression_attribute_values(
                                (!values.is_empty()).then_some(values),
                            );
                    }
                    TransactWriteItem::builder()
                        .delete(b.build().map_err(build_err)?)
                        .build()
                }
            };
            items.push(item);
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(
                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c),
                ) = e.as_service_error()
                {
                    let failed = c
                        .cancellation_reasons()
                        .iter()
                        .position(|r| r.code() == Some("ConditionalCheckFailed"));
                    let msg_says = c
                        .message()
                        .is_some_and(|m| m.contains("ConditionalCheckFailed"));
                    if let Some(i) = failed {
                        return Err(self.conflict(&writes[i]));
                    }
                    if msg_says {
                        return Err(self.conflict(&writes[0]));
                    }
                }
                Err(remote(
                    format!("TransactWriteItems ({} writes)", writes.len()),
                    e,
                ))
            }
        }
    }
}
