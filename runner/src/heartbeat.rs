//! Heartbeats to MotherGoose: one every interval and one right away when the agent's
//! state changes (a *poke*).
//!
//! During an outage heartbeats are kept in a bounded outbox (the oldest dropped first)
//! and sent again, oldest first, with exponential backoff (1 s, 2 s, 4 s, … up to a
//! minute); each keeps the time it was measured. After `max_silence` without an answer the
//! supervisor is told ([`Event::Silent`]) and stops the runner gracefully. A 401 (the
//! credential is wrong or the runner is terminated) ends heartbeats ([`Event::Revoked`]).
//! Every instruction in an answer is passed on ([`Event::Instruction`]).

use crate::client::{ApiError, HeartbeatSink};
use crate::health::Sampler;
use chrono::{DateTime, Utc};
use gosling_api::{AgentState, Heartbeat, Instruction};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::{sleep_until, Instant};

/// What the supervisor knows of the agent, as heartbeats report it.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The agent's state.
    pub state: AgentState,
    /// Jobs running now.
    pub jobs_running: u32,
    /// Jobs taken since the runner started.
    pub job_count: u64,
    /// Agent crashes, failed jobs and failed updates since the runner started.
    pub failure_count: u32,
    /// When a job last ended.
    pub last_job_at: Option<DateTime<Utc>>,
    /// The agent's version.
    pub agent_version: String,
    /// The egg configuration hash the agent runs with.
    pub config_hash: Option<String>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            state: AgentState::Active,
            jobs_running: 0,
            job_count: 0,
            failure_count: 0,
            last_job_at: None,
            agent_version: String::new(),
            config_hash: None,
        }
    }
}

/// What the heartbeat loop tells the supervisor.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// MotherGoose's answer carried an instruction.
    Instruction(Instruction),
    /// MotherGoose refused the credential (401): the runner is terminated or unknown.
    Revoked(String),
    /// No answer from MotherGoose for this long.
    Silent(Duration),
}

/// The wall clock heartbeats are stamped with (replaceable in tests).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Intervals and limits.
#[derive(Clone)]
pub struct Timing {
    /// Between heartbeats.
    pub interval: Duration,
    /// Without contact before [`Event::Silent`].
    pub max_silence: Duration,
    /// The first retry delay during an outage.
    pub retry_base: Duration,
    /// The longest retry delay.
    pub retry_max: Duration,
    /// Heartbeats kept during an outage.
    pub outbox: usize,
    /// The clock.
    pub clock: Clock,
}

impl Timing {
    /// Defaults: retries from 1 s to 60 s, 120 heartbeats kept, the system clock.
    pub fn new(interval: Duration, max_silence: Duration) -> Timing {
        Timing {
            interval,
            max_silence,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            outbox: 120,
            clock: Arc::new(Utc::now),
        }
    }
}

/// Exponential backoff: base, 2×base, 4×base, … capped.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff from `base` up to `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            failures: 0,
        }
    }

    /// The delay after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Heartbeats waiting to be sent, oldest first, at most `cap`.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Heartbeat>,
    cap: usize,
    /// Heartbeats dropped because the outbox was full.
    pub dropped: u64,
}

impl Outbox {
    /// An empty outbox keeping at most `cap` (at least 1).
    pub fn new(cap: usize) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            cap: cap.max(1),
            dropped: 0,
        }
    }

    /// Adds `hb`, dropping the oldest when full.
    pub fn push(&mut self, hb: Heartbeat) {
        if self.queue.len() == self.cap {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back(hb);
    }

    /// Heartbeats waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

type FinishRequest = (Snapshot, Duration, oneshot::Sender<bool>);

/// The running heartbeat loop.
pub struct Heartbeats {
    poke: Arc<Notify>,
    finish: mpsc::Sender<FinishRequest>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeats {
    /// Starts the loop: the first heartbeat goes at once.
    pub fn spawn<S: HeartbeatSink>(
        sink: Arc<S>,
        snapshots: watch::Receiver<Snapshot>,
        sampler: Sampler,
        timing: Timing,
        events: mpsc::UnboundedSender<Event>,
    ) -> Heartbeats {
        let poke = Arc::new(Notify::new());
        let (finish, finish_rx) = mpsc::channel(1);
        let state = Loop {
            sink,
            snapshots,
            sampler,
            outbox: Outbox::new(timing.outbox),
            backoff: Backoff::new(timing.retry_base, timing.retry_max),
            timing,
            events,
            poke: poke.clone(),
            finish_rx,
            last_contact: Instant::now(),
            outage_since: None,
            revoked: false,
            silent_told: false,
        };
        let task = tokio::spawn(state.run());
        Heartbeats { poke, finish, task }
    }

    /// Sends a heartbeat now (the state changed).
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// Sends what is waiting and a last heartbeat of `last` within `within`, then stops;
    /// whether MotherGoose received it.
    pub async fn finish(self, last: Snapshot, within: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.finish.send((last, within, tx)).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Loop<S> {
    sink: Arc<S>,
    snapshots: watch::Receiver<Snapshot>,
    sampler: Sampler,
    outbox: Outbox,
    backoff: Backoff,
    timing: Timing,
    events: mpsc::UnboundedSender<Event>,
    poke: Arc<Notify>,
    finish_rx: mpsc::Receiver<FinishRequest>,
    last_contact: Instant,
    outage_since: Option<Instant>,
    revoked: bool,
    silent_told: bool,
}

impl<S: HeartbeatSink> Loop<S> {
    fn measure(&mut self, s: &Snapshot) -> Heartbeat {
        let usage = self.sampler.sample();
        Heartbeat {
            state: s.state,
            jobs_running: s.jobs_running,
            job_count: s.job_count,
            cpu_usage: usage.cpu,
            memory_usage: usage.memory,
            disk_usage: usage.disk,
            agent_version: s.agent_version.clone(),
            failure_count: s.failure_count,
            last_job_at: s.last_job_at,
            config_hash: s.config_hash.clone(),
            measured_at: (self.timing.clock)(),
        }
    }

    fn push_sample(&mut self) {
        if self.revoked {
            return;
        }
        let s = self.snapshots.borrow().clone();
        let hb = self.measure(&s);
        self.outbox.push(hb);
    }

    fn contact(&mut self) {
        self.last_contact = Instant::now();
        self.silent_told = false;
        if let Some(since) = self.outage_since.take() {
            tracing::info!(
                "MotherGoose answers again after {:.0?}; {} heartbeats were dropped meanwhile",
                since.elapsed(),
                self.outbox.dropped
            );
        }
    }

    /// Sends the outbox, oldest first; `Err` on a transient failure.
    async fn flush(&mut self) -> Result<(), ()> {
        while let Some(hb) = self.outbox.queue.front() {
            match self.sink.heartbeat(hb).await {
                Ok(reply) => {
                    self.outbox.queue.pop_front();
                    self.contact();
                    if let Some(i) = reply.instruction {
                        let _ = self.events.send(Event::Instruction(i));
                    }
                }
                Err(ApiError::Unauthorized { message, .. }) => {
                    self.revoked = true;
                    self.outbox.queue.clear();
                    let _ = self.events.send(Event::Revoked(message));
                    return Ok(());
                }
                Err(e) if e.is_transient() => {
                    if self.outage_since.is_none() {
                        self.outage_since = Some(Instant::now());
                        tracing::warn!("heartbeat not delivered, keeping it to resend: {e}");
                    }
                    return Err(());
                }
                Err(e) => {
                    tracing::warn!("heartbeat refused, dropped: {e}");
                    self.outbox.queue.pop_front();
                    self.contact();
                }
            }
        }
        Ok(())
    }

    async fn run(mut self) {
        let far = Instant::now() + Duration::from_secs(100 * 365 * 86_400);
        let mut next_sample = Instant::now();
        let mut retry_at: Option<Instant> = None;
        loop {
            let silence_at = self.last_contact + self.timing.max_silence;
            tokio::select! {
                biased;
                req = self.finish_rx.recv() => {
                    if let Some((last, within, reply)) = req {
                        let delivered = self.finish(last, within).await;
                        let _ = reply.send(delivered);
                    }
                    return;
                }
                _ = sleep_until(silence_at), if !self.silent_told && !self.revoked => {
                    self.silent_told = true;
                    let _ = self.events.send(Event::Silent(self.last_contact.elapsed()));
                    continue;
                }
                _ = sleep_until(next_sample) => {
                    self.push_sample();
                    next_sample = Instant::now() + self.timing.interval;
                }
                _ = self.poke.notified() => self.push_sample(),
                _ = sleep_until(retry_at.unwrap_or(far)) => retry_at = None,
            }
            if self.revoked || retry_at.is_some() {
                continue;
            }
            match self.flush().await {
                Ok(()) => self.backoff.reset(),
                Err(()) => retry_at = Some(Instant::now() + self.backoff.next_delay()),
            }
        }
    }

    async fn finish(&mut self, last: Snapshot, within: Duration) -> bool {
        if self.revoked {
            return false;
        }
        let hb = self.measure(&last);
        self.outbox.push(hb);
        let deadline = Instant::now() + within;
        self.backoff.reset();
        loop {
            match tokio::time::timeout_at(deadline, self.flush()).await {
                Ok(Ok(())) => return !self.revoked,
                Ok(Err(())) => {
                    let wait = self.backoff.next_delay();
                    if Instant::now() + wait >= deadline {
                        return false;
                    }
                    tokio::time::sleep(wait).await;
                }
                Err(_) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gosling_api::HeartbeatReply;
    use std::sync::Mutex;

    /// A MotherGoose stand-in: answers from a script, records when each call came.
    #[derive(Default)]
    struct Script {
        calls: Mutex<Vec<(Instant, Heartbeat)>>,
        /// Answers for the first calls (then 200 with no instruction).
        answers: Mutex<VecDeque<Result<Option<Instruction>, u16>>>,
        down: std::sync::atomic::AtomicBool,
    }

    impl HeartbeatSink for Script {
        async fn heartbeat(&self, hb: &Heartbeat) -> Result<HeartbeatReply, ApiError> {
            self.calls
                .lock()
                .unwrap()
                .push((Instant::now(), hb.clone()));
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(ApiError::Unreachable {
                    what: "test",
                    message: "down".into(),
                });
            }
            match self.answers.lock().unwrap().pop_front() {
                Some(Err(401)) => Err(ApiError::Unauthorized {
                    what: "test",
                    message: "terminated".into(),
                }),
                Some(Err(status)) => Err(ApiError::Status {
                    what: "test",
                    status,
                    message: "no".into(),
                }),
                Some(Ok(instruction)) => Ok(HeartbeatReply {
                    runner_state: "idle".into(),
                    instruction,
                    config_hash: None,
                }),
                None => Ok(HeartbeatReply {
                    runner_state: "idle".into(),
                    instruction: None,
                    config_hash: None,
                }),
            }
        }
    }

    struct Rig {
        script: Arc<Script>,
        hb: Heartbeats,
        snap: watch::Sender<Snapshot>,
        events: mpsc::UnboundedReceiver<Event>,
        start: Instant,
    }

    fn rig(interval: u64, max_silence: u64, outbox: usize) -> Rig {
        let script = Arc::new(Script::default());
        let (snap, rx) = watch::channel(Snapshot::default());
        let (etx, events) = mpsc::unbounded_channel();
        let start = Instant::now();
        let wall = Utc::now();
        let mut timing = Timing::new(
            Duration::from_secs(interval),
            Duration::from_secs(max_silence),
        );
        timing.outbox = outbox;
        // measured_at follows tokio's (paused) clock.
        timing.clock = Arc::new(move || {
            wall + chrono::Duration::from_std(start.elapsed()).unwrap_or_default()
        });
        let hb = Heartbeats::spawn(
            script.clone(),
            rx,
            Sampler::new(std::path::Path::new("/")),
            timing,
            etx,
        );
        Rig {
            script,
            hb,
            snap,
            events,
            start,
        }
    }

    impl Rig {
        fn offsets(&self) -> Vec<u64> {
            let calls = self.script.calls.lock().unwrap();
            calls
                .iter()
                .map(|(t, _)| (*t - self.start).as_millis() as u64)
                .collect()
        }
    }

    async fn settle(d: u64) {
        tokio::time::sleep(Duration::from_millis(d)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn one_heartbeat_every_interval_and_one_on_a_poke() {
        let r = rig(30, 1800, 10);
        settle(95_000).await;
        assert_eq!(r.offsets(), vec![0, 30_000, 60_000, 90_000]);
        r.snap.send_modify(|s| {
            s.state = AgentState::Busy;
            s.jobs_running = 1;
        });
        r.hb.poke();
        settle(1).await;
        let calls = r.script.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 5);
        assert_eq!(calls[4].1.state, AgentState::Busy);
        assert_eq!((calls[4].0 - r.start).as_millis(), 95_000, "right away");
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_buffered_and_resent_with_exponential_backoff() {
        let r = rig(30, 1800, 100);
        r.script
            .down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        settle(100_000).await;
        // Tries at 0 (sample), then retries 1, 2, 4, 8, 16, 32, 64 s after each failure;
        // samples at 30 s, 60 s and 90 s only join the outbox while a retry is pending.
        assert_eq!(
            r.offsets(),
            vec![0, 1_000, 3_000, 7_000, 15_000, 31_000, 63_000]
        );
        r.script
            .down
            .store(false, std::sync::atomic::Ordering::SeqCst);
        settle(30_000).await; // the retry at 63 + 60 = 123 s succeeds
        let calls = r.script.calls.lock().unwrap().clone();
        let delivered: Vec<i64> = calls[7..]
            .iter()
            .map(|(_, hb)| hb.measured_at.timestamp_millis())
            .collect();
        let t0 = calls[0].1.measured_at.timestamp_millis();
        assert_eq!(
            delivered.iter().map(|t| t - t0).collect::<Vec<_>>(),
            vec![0, 30_000, 60_000, 90_000, 120_000],
            "every buffered heartbeat, oldest first, with the time it was measured"
        );
        assert_eq!((calls[7].0 - r.start).as_millis(), 123_000);
    }

    #[tokio::test(start_paused = true)]
    async fn the_outbox_is_bounded_oldest_dropped() {
        let r = rig(10, 100_000, 3);
        r.script
            .down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        settle(95_000).await;
        r.script
            .down
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let before = r.script.calls.lock().unwrap().len();
        settle(60_000).await;
        let calls = r.script.calls.lock().unwrap().clone();
        let t0 = calls[0].1.measured_at.timestamp_millis();
        let first_ok: Vec<i64> = calls[before..before + 3]
            .iter()
            .map(|(_, h)| (h.measured_at.timestamp_millis() - t0) / 1000)
            .collect();
        // A sample every 10 s while down, until the retry at 123 s: only the last 3 are kept.
        assert_eq!(first_ok, vec![100, 110, 120]);
    }

    #[tokio::test(start_paused = true)]
    async fn silence_beyond_the_limit_is_reported_once() {
        let mut r = rig(30, 600, 10);
        r.script
            .down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let ev = r.events.recv().await.unwrap();
        assert_eq!(ev, Event::Silent(Duration::from_secs(600)));
        assert_eq!(r.start.elapsed(), Duration::from_secs(600));
        settle(1_000_000).await;
        assert!(r.events.try_recv().is_err(), "told once");
    }

    #[tokio::test(start_paused = true)]
    async fn instructions_are_passed_on_and_401_ends_heartbeats() {
        let mut r = rig(30, 600, 10);
        r.script.answers.lock().unwrap().extend([
            Ok(Some(Instruction::Pause)),
            Err(404),
            Ok(Some(Instruction::Drain)),
            Err(401),
        ]);
        assert_eq!(
            r.events.recv().await,
            Some(Event::Instruction(Instruction::Pause))
        );
        assert_eq!(
            r.events.recv().await,
            Some(Event::Instruction(Instruction::Drain))
        );
        assert_eq!(
            r.events.recv().await,
            Some(Event::Revoked("terminated".into()))
        );
        let n = r.script.calls.lock().unwrap().len();
        assert_eq!(n, 4, "a refused (404) heartbeat is dropped, not retried");
        settle(1_000_000).await;
        assert_eq!(r.script.calls.lock().unwrap().len(), n, "no more after 401");
        assert!(
            !r.hb
                .finish(Snapshot::default(), Duration::from_secs(5))
                .await
        );
    }

    #[tokio::test(start_paused = true)]
    async fn finish_sends_the_last_heartbeat() {
        let r = rig(30, 600, 10);
        settle(1).await;
        let last = Snapshot {
            state: AgentState::Stopped,
            ..Snapshot::default()
        };
        assert!(r.hb.finish(last, Duration::from_secs(5)).await);
        let calls = r.script.calls.lock().unwrap().clone();
        assert_eq!(calls.last().unwrap().1.state, AgentState::Stopped);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let d: Vec<u64> = (0..9).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), Duration::from_secs(60));
    }
}
