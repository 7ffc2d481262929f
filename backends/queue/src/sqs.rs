//! SQS (and Yandex Message Queue, which speaks the SQS API): `SendMessage`,
//! `ReceiveMessage` with a visibility timeout and long polling, `DeleteMessage`,
//! `ChangeMessageVisibility` for retries and releases, and a dead-letter queue `NAME-dead`.
//!
//! Deduplication: a FIFO queue (`NAME.fifo`) drops a message whose deduplication key was
//! sent in the last five minutes (SQS's window); a standard queue does not deduplicate, so
//! the consumers' own durable deduplication (in the state store) is what makes replays
//! harmless there.

use crate::{
    DeadLetter, EnqueueOptions, Enqueued, Lease, Message, Queue, QueueError, QueueOptions,
    QueueStats, Result,
};
use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;
use std::collections::HashMap;
use std::time::Duration;

/// SQS caps: 10 messages per receive, 20 s long poll, 15 min send delay, 12 h visibility.
const MAX_RECEIVE: usize = 10;
const MAX_WAIT_S: u64 = 20;
const MAX_DELAY_S: u64 = 900;
const MAX_VISIBILITY_S: u64 = 43_200;

/// Most SQS calls in flight at once (a burst of webhooks waits here instead of opening a
/// connection each).
const IN_FLIGHT: usize = 64;

/// An SQS queue and its dead-letter queue.
pub struct SqsQueue {
    client: Client,
    slots: tokio::sync::Semaphore,
    name: String,
    url: String,
    dead_url: String,
    fifo: bool,
}

impl std::fmt::Debug for SqsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqsQueue({})", self.name)
    }
}

fn remote(queue: &str, operation: &'static str, e: impl std::fmt::Display) -> QueueError {
    QueueError::Remote {
        queue: queue.into(),
        operation,
        message: e.to_string(),
    }
}

/// The SDK's error with its service code and message, not just "service error".
fn explain<E: aws_sdk_sqs::error::ProvideErrorMetadata + std::fmt::Display>(e: &E) -> String {
    match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => e.to_string(),
    }
}

impl SqsQueue {
    /// Opens `sqs://NAME?region=…&endpoint=…` (`rest` is what follows `sqs://`), creating
    /// the queue and its dead-letter queue when missing.
    pub async fn open(url: &str, rest: &str, options: &QueueOptions) -> Result<SqsQueue> {
        let bad = |reason: &str| QueueError::BadUrl {
            url: url.into(),
            reason: reason.into(),
        };
        let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
        if name.is_empty() || name.contains('/') {
            return Err(bad("expected sqs://NAME?region=…"));
        }
        let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        if let Some(k) = params
            .keys()
            .find(|k| !["region", "endpoint"].contains(&k.as_str()))
        {
            return Err(bad(&format!(
                "unknown parameter `{k}` (known: region, endpoint)"
            )));
        }
        let config = gosling_state::aws_config(
            params.get("endpoint").map(String::as_str),
            params.get("region").map(String::as_str),
            options.credentials.as_ref(),
        )
        .await;
        // A long poll waits up to MAX_WAIT_S for its first byte: give its attempts room.
        let config = aws_sdk_sqs::config::Builder::from(&config)
            .timeout_config(gosling_state::aws_timeouts(Duration::from_secs(
                MAX_WAIT_S + 10,
            )))
            .build();
        let client = Client::from_conf(config);
        let fifo = name.ends_with(".fifo");
        let dead_name = match name.strip_suffix(".fifo") {
            Some(base) => format!("{base}-dead.fifo"),
            None => format!("{name}-dead"),
        };
        let dead_url = create(&client, &dead_name, fifo).await?;
        let url = create(&client, name, fifo).await?;
        Ok(SqsQueue {
            client,
            slots: tokio::sync::Semaphore::new(IN_FLIGHT),
            name: name.to_string(),
            url,
            dead_url,
            fifo,
        })
    }

    async fn count(&self, url: &str) -> Result<(u64, u64)> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| remote(&self.name, "GetQueueAttributes", explain(&e)))?;
        let attrs = out.attributes.unwrap_or_default();
        let n = |k: QueueAttributeName| -> u64 {
            attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        Ok((
            n(QueueAttributeName::ApproximateNumberOfMessages),
            n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                + n(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        ))
    }

    async fn send(
        &self,
        url: &str,
        body: String,
        dedup: Option<&str>,
        delay: Duration,
    ) -> Result<String> {
        let _slot = self.slots.acquire().await;
        let mut req = self.client.send_message().queue_url(url).message_body(body);
        if self.fifo {
            // One group per message: FIFO here is for deduplication, not ordering.
            let dedup_id = match dedup {
                Some(k) => sha256_hex(k),
                None => format!("{:032x}", rand::random::<u128>()),
            };
            req = req
                .message_group_id(dedup_id.clone())
                .message_deduplication_id(dedup_id);
        } else if !delay.is_zero() {
            req = req.delay_seconds(delay.as_secs().min(MAX_DELAY_S) as i32);
        }
        let out = req
            .send()
            .await
            .map_err(|e| remote(&self.name, "SendMessage", explain(&e)))?;
        Ok(out.message_id.unwrap_or_default())
    }
}

async fn create(client: &Client, name: &str, fifo: bool) -> Result<String> {
    let mut req = client.create_queue().queue_name(name);
    if fifo {
        req = req.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let out = req
        .send()
        .await
        .map_err(|e| remote(name, "CreateQueue", explain(&e)))?;
    out.queue_url
        .ok_or_else(|| remote(name, "CreateQueue", "no queue URL in the answer"))
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    gosling_state::hex(&sha2::Sha256::digest(s.as_bytes()))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    message: Message,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default)]
    attempts: u32,
}

#[async_trait]
impl Queue for SqsQueue {
    fn describe(&self) -> String {
        format!("sqs://{}", self.name)
    }

    async fn enqueue(&self, message: &Message, options: EnqueueOptions) -> Result<Enqueued> {
        let body = serde_json::to_string(&Envelope {
            message: message.clone(),
            error: None,
            attempts: 0,
        })
        .map_err(|e| QueueError::Body {
            kind: message.kind.clone(),
            message: e.to_string(),
        })?;
        // SQS answers a FIFO duplicate with the first message's id, not an error: a
        // duplicate is indistinguishable here, which is what at-least-once consumers expect.
        let id = self
            .send(&self.url, body, options.dedup_key.as_deref(), options.delay)
            .await?;
        Ok(Enqueued::New(id))
    }

    async fn lease(&self, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Lease>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_RECEIVE) as i32)
            .visibility_timeout(visibility.as_secs().clamp(1, MAX_VISIBILITY_S) as i32)
            .wait_time_seconds(wait.as_secs().min(MAX_WAIT_S) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| remote(&self.name, "ReceiveMessage", explain(&e)))?;
        let mut leases = Vec::new();
        for m in out.messages.unwrap_or_default() {
            let attempts = m
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let body = m.body.unwrap_or_default();
            let message = match serde_json::from_str::<Envelope>(&body) {
                Ok(e) => e.message,
                Err(e) => Message {
                    kind: "invalid".into(),
                    body: serde_json::json!({ "error": e.to_string(), "raw": body }),
                },
            };
            leases.push(Lease {
                id: m.message_id.unwrap_or_default(),
                receipt: m.receipt_handle.unwrap_or_default(),
                attempts,
                message,
            });
        }
        Ok(leases)
    }

    async fn ack(&self, lease: &Lease) -> Result<bool> {
        match self
            .client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&lease.receipt)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if explain(&e).contains("ReceiptHandleIsInvalid") => Ok(false),
            Err(e) => Err(remote(&self.name, "DeleteMessage", explain(&e))),
        }
    }

    async fn extend(&self, lease: &Lease, visibility: Duration) -> Result<bool> {
        match self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&lease.receipt)
            .visibility_timeout(visibility.as_secs().clamp(1, MAX_VISIBILITY_S) as i32)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if lost_lease(&explain(&e)) => Ok(false),
            Err(e) => Err(remote(&self.name, "ChangeMessageVisibility", explain(&e))),
        }
    }

    async fn retry(&self, lease: &Lease, delay: Duration, _error: &str) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&lease.receipt)
            .visibility_timeout(delay.as_secs().min(MAX_VISIBILITY_S) as i32)
            .send()
            .await
            .map_err(|e| remote(&self.name, "ChangeMessageVisibility", explain(&e)))?;
        Ok(())
    }

    async fn dead_letter(&self, lease: &Lease, error: &str) -> Result<()> {
        let body = serde_json::to_string(&Envelope {
            message: lease.message.clone(),
            error: Some(error.to_string()),
            attempts: lease.attempts,
        })
        .map_err(|e| QueueError::Body {
            kind: lease.message.kind.clone(),
            message: e.to_string(),
        })?;
        self.send(&self.dead_url, body, Some(&lease.id), Duration::ZERO)
            .await?;
        self.ack(lease).await.map(|_| ())
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        self.retry(lease, Duration::ZERO, "released").await
    }

    async fn stats(&self) -> Result<QueueStats> {
        let (ready, in_flight) = self.count(&self.url).await?;
        let (dead_ready, dead_hidden) = self.count(&self.dead_url).await?;
        Ok(QueueStats {
            ready,
            in_flight,
            dead: dead_ready + dead_hidden,
        })
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        // Peek: receive with a zero visibility timeout so the messages stay where they are.
        let out = self
            .client
            .receive_message()
            .queue_url(&self.dead_url)
            .max_number_of_messages(limit.clamp(1, MAX_RECEIVE) as i32)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| remote(&self.name, "ReceiveMessage", explain(&e)))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let e: Envelope = serde_json::from_str(m.body.as_deref()?).ok()?;
                Some(DeadLetter {
                    id: m.message_id.unwrap_or_default(),
                    message: e.message,
                    attempts: e.attempts,
                    error: e.error.unwrap_or_default(),
                })
            })
            .collect())
    }
}

/// Whether SQS refused a receipt because the lease is gone (expired or given to another).
fn lost_lease(error: &str) -> bool {
    error.contains("ReceiptHandleIsInvalid") || error.contains("MessageNotInflight")
}
