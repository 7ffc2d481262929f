//! Telling people: a failed cron Job's `on_failure { notify }` recipients, and operators
//! (rules with `action = "notify"`). The channel is behind [`Notifier`]; [`Webhook`] posts
//! JSON, [`Email`] sends mail over SMTP (lettre, rustls), [`Channels`] routes e-mail
//! addresses to the mailer and everything to the webhook.

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The webhook refused or could not be reached.
    #[error("webhook {url}: {message}")]
    Webhook {
        /// The URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// The mail server refused or could not be reached.
    #[error("e-mail: {0}")]
    Email(String),
    /// A recipient nobody can reach (an e-mail address without a mailer configured).
    #[error("no channel for {0}: configure --smtp-url (e-mail) or --notify-webhook")]
    NoChannel(String),
}

/// Something to tell.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notification {
    /// One line.
    pub subject: String,
    /// The whole story.
    pub body: String,
    /// Who is to be told (e-mail addresses).
    pub recipients: Vec<String>,
    /// Machine-readable facts (job, scheduled time, result; runner, rule).
    pub details: serde_json::Value,
}

/// A way to tell people.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers `n`; `Ok` once the channel accepted it.
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError>;
}

/// A notifier that drops everything (no channel configured).
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

#[async_trait]
impl Notifier for Silent {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        match n.recipients.first() {
            Some(r) => Err(NotifyError::NoChannel(r.clone())),
            None => Ok(()),
        }
    }
}

/// HTTP POST of the notification as JSON (`subject`, `body`, `recipients`, `details`) to a
/// URL; any 2xx answer is delivery.
#[derive(Clone, Debug)]
pub struct Webhook {
    url: String,
    client: reqwest::Client,
}

impl Webhook {
    /// A webhook notifier posting to `url`.
    pub fn new(url: impl Into<String>) -> Result<Webhook, NotifyError> {
        let url = url.into();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| NotifyError::Webhook {
                url: url.clone(),
                message: e.to_string(),
            })?;
        Ok(Webhook { url, client })
    }
}

#[async_trait]
impl Notifier for Webhook {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        let fail = |message: String| NotifyError::Webhook {
            url: self.url.clone(),
            message,
        };
        let resp = self
            .client
            .post(&self.url)
            .json(n)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(fail(format!("answered {}", resp.status())))
        }
    }
}

/// Mail over SMTP.
#[derive(Clone)]
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Email(from {})", self.from)
    }
}

impl Email {
    /// A mailer for `url` — `smtps://USER:PASS@HOST[:PORT]` (TLS), `smtp://HOST[:PORT]?tls=required`
    /// (STARTTLS) or `smtp://HOST:PORT` (plain, for a relay on the same host) — sending from
    /// `from`.
    pub fn new(url: &str, from: &str) -> Result<Email, NotifyError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| NotifyError::Email(format!("`{url}`: {e}")))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from = from
            .parse()
            .map_err(|e| NotifyError::Email(format!("sender `{from}`: {e}")))?;
        Ok(Email { transport, from })
    }
}

#[async_trait]
impl Notifier for Email {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        if n.recipients.is_empty() {
            return Ok(());
        }
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(&n.subject);
        for r in &n.recipients {
            let to: Mailbox = r
                .parse()
                .map_err(|e| NotifyError::Email(format!("recipient `{r}`: {e}")))?;
            b = b.to(to);
        }
        let msg = b
            .body(n.body.clone())
            .map_err(|e| NotifyError::Email(e.to_string()))?;
        self.transport
            .send(msg)
            .await
            .map_err(|e| NotifyError::Email(e.to_string()))?;
        Ok(())
    }
}

/// The configured channels: e-mail recipients go to the mailer; the webhook, when set,
/// gets every notification (with its recipients).
#[derive(Clone, Default)]
pub struct Channels {
    /// The mailer.
    pub email: Option<Arc<dyn Notifier>>,
    /// The webhook.
    pub webhook: Option<Arc<dyn Notifier>>,
}

#[async_trait]
impl Notifier for Channels {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        let mut delivered = false;
        if let Some(w) = &self.webhook {
            w.notify(n).await?;
            delivered = true;
        }
        match (&self.email, n.recipients.is_empty()) {
            (Some(m), false) => m.notify(n).await?,
            (None, false) if !delivered => {
                return Err(NotifyError::NoChannel(n.recipients.join(", ")));
            }
            _ => {}
        }
        Ok(())
    }
}
