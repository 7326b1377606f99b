//! The outbox worker: delivers what `/passwordless/start` queued, at least once, with retries.
//!
//! Every message is delivered under a lease, so another worker, on this node or another, never
//! takes it while the lease holds. A message stored by this node's requests comes leased to
//! this worker already and is handed over in memory ([`Handoff`]); the rest (retries, a
//! stopped node's messages once their lease has run out, overflow) are claimed from the store
//! when the worker is woken and every poll interval. Up to `batch` deliveries run at once and
//! each is settled as soon as it ends. A message whose code has expired is dropped and recorded
//! instead of sent. Temporary failures are retried with exponential backoff and jitter;
//! permanent ones are given up and recorded as `fn` events.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::clock::Clock;
use tessera_core::crypto::ServerSecret;
use tessera_core::rand::{Random, below, ordered_id};
use tessera_store::{Event, OutboxMessage, OutboxOutcome, Store};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::mailer::{DeliveryError, Mailer};
use crate::message::{EmailMessage, QueuedEmail};
use crate::sms::{SmsMessage, SmsSender};

/// The channel of a message that must not be sent (see `/passwordless/start`: an unknown address
/// with sign-up disabled, or a blocked user, costs the same work as a real send).
pub use tessera_store::VOID_CHANNEL;

/// The sealing purpose for outbox payloads.
pub const SEAL_PURPOSE: &str = "tessera/outbox/v1";

enum Payload {
    Email(EmailMessage),
    Sms(SmsMessage),
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub batch: i64,
    pub lease_secs: i64,
    pub max_attempts: i64,
    pub poll_interval: Duration,
    pub base_backoff_secs: i64,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            batch: 50,
            lease_secs: 60,
            max_attempts: 8,
            poll_interval: Duration::from_millis(1000),
            base_backoff_secs: 5,
        }
    }
}

pub struct Worker {
    pub store: Arc<dyn Store>,
    pub secret: ServerSecret,
    pub mailer: Arc<Mailer>,
    pub sms: Arc<SmsSender>,
    pub clock: Arc<dyn Clock>,
    pub rng: Arc<dyn Random>,
    /// This worker's lease owner name (node id).
    pub owner: String,
    pub wake: Arc<Notify>,
    pub options: WorkerOptions,
}

/// How many messages a node's requests may hand to its own worker before they fall back to
/// the claim path (stored unleased, for any worker).
pub const HANDOFF_CAPACITY: usize = 1024;

/// The way from a request to this node's worker: a message stored already leased to the
/// worker ([`Handoff::lease`]) is handed over in memory, so delivery needs no claim. Should
/// the node stop before it is sent, the lease runs out and any worker claims it.
#[derive(Clone)]
pub struct Handoff {
    tx: mpsc::Sender<Handed>,
    owner: String,
    lease_secs: i64,
}

/// A message handed over in memory, with the end of the lease it was stored with.
pub struct Handed {
    pub message: OutboxMessage,
    pub lease_until: i64,
}

impl Handoff {
    /// A place in the worker's queue, or `None` when it is full.
    pub fn reserve(&self) -> Option<mpsc::OwnedPermit<Handed>> {
        self.tx.clone().try_reserve_owned().ok()
    }

    /// The lease to store a handed-over message with: this worker, until `now` plus the lease.
    pub fn lease(&self, now: i64) -> (String, i64) {
        (self.owner.clone(), now + self.lease_secs)
    }
}

impl Worker {
    /// Runs until `shutdown` turns true. Messages come two ways: handed over in memory by
    /// this node's requests (the returned [`Handoff`]), and claimed from the store when woken
    /// and every `poll_interval` (retries, messages of a node that stopped, and those stored
    /// while the hand-off queue was full). At most `batch` deliveries run at once; each is
    /// settled as soon as it ends, so one slow message holds up no other.
    pub fn spawn(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> (tokio::task::JoinHandle<()>, Handoff) {
        let (tx, mut rx) = mpsc::channel::<Handed>(HANDOFF_CAPACITY);
        let handoff = Handoff {
            tx,
            owner: self.owner.clone(),
            lease_secs: self.options.lease_secs,
        };
        let task = tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(self.options.batch.max(1) as usize));
            let mut tasks = JoinSet::new();
            let mut poll = tokio::time::interval(self.options.poll_interval);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut claim = false;
            loop {
                if *shutdown.borrow() {
                    break;
                }
                while let Some(r) = tasks.try_join_next() {
                    log_settle(r);
                }
                if claim {
                    claim = false;
                    let free = slots.available_permits().max(1) as i64;
                    match self.claim(free).await {
                        Ok(batch) => {
                            // A full batch: more may be due at once.
                            claim = batch.len() as i64 == free;
                            for msg in batch {
                                self.start(&slots, &mut tasks, msg).await;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "outbox claim failed"),
                    }
                    if claim {
                        continue;
                    }
                }
                tokio::select! {
                    Some(h) = rx.recv() => self.start_handed(&slots, &mut tasks, h).await,
                    _ = self.wake.notified() => claim = true,
                    _ = poll.tick() => claim = true,
                    Some(r) = tasks.join_next(), if !tasks.is_empty() => log_settle(r),
                    _ = shutdown.changed() => {}
                }
            }
            // Deliver what was already handed over (it is leased to this node), then wait for
            // the deliveries in flight; the server bounds how long it waits for this.
            rx.close();
            while let Some(h) = rx.recv().await {
                self.start_handed(&slots, &mut tasks, h).await;
            }
            while let Some(r) = tasks.join_next().await {
                log_settle(r);
            }
        });
        (task, handoff)
    }

    /// Starts the delivery of a handed-over message, unless it waited in the queue for half
    /// its lease or more: a delivery must end before the lease does, or another worker could
    /// claim the message and send it too. Such a message is left to the claim path (any
    /// worker takes it once its lease has run out).
    async fn start_handed(
        self: &Arc<Self>,
        slots: &Arc<Semaphore>,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        h: Handed,
    ) {
        if self.clock.now() + self.options.lease_secs / 2 >= h.lease_until {
            tracing::debug!(outbox_id = %h.message.id, "handed-over message waited too long; left to be claimed");
            return;
        }
        self.start(slots, tasks, h.message).await;
    }

    /// Starts one delivery once a slot is free.
    async fn start(
        self: &Arc<Self>,
        slots: &Arc<Semaphore>,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        msg: OutboxMessage,
    ) {
        let Ok(slot) = Arc::clone(slots).acquire_owned().await else {
            return;
        };
        let me = Arc::clone(self);
        tasks.spawn(async move { me.deliver(msg, Some(slot)).await });
    }

    async fn claim(&self, limit: i64) -> anyhow::Result<Vec<OutboxMessage>> {
        Ok(self
            .store
            .claim_outbox(
                &self.owner,
                self.clock.now(),
                self.options.lease_secs,
                limit,
            )
            .await?)
    }

    /// Claims and settles one batch; returns how many messages it handled (for tests and
    /// tools that run no worker task).
    pub async fn run_once(self: &Arc<Self>) -> anyhow::Result<usize> {
        let batch = self.claim(self.options.batch).await?;
        let n = batch.len();
        let mut set = JoinSet::new();
        for msg in batch {
            let me = Arc::clone(self);
            set.spawn(async move { me.deliver(msg, None).await });
        }
        while let Some(r) = set.join_next().await {
            log_settle(r);
        }
        Ok(n)
    }

    /// Delivers one message and settles it. `slot`, the message's place among the `batch`
    /// deliveries at once, is given back as soon as nothing more is sent for the message
    /// (it was sent or refused, or it is one not to send: void, expired, unreadable), before
    /// the store records that: the limit is on sends, and a settle that waits for a busy
    /// SQLite writer must not hold up the next send (with the start's event in the issue's
    /// turn, the 50 places filled with settles at `start`'s maximum, the hand-off queue
    /// overflowed and mail lagged 19–51 s; bench/README.md).
    async fn deliver(
        &self,
        msg: OutboxMessage,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> anyhow::Result<()> {
        let now = self.clock.now();
        if msg.channel == VOID_CHANNEL {
            // Queued only so that a request that sends nothing costs what one that sends does.
            drop(slot);
            self.store
                .settle_outbox(&msg.id, &OutboxOutcome::Delivered)
                .await?;
            return Ok(());
        }
        if msg.not_after.is_some_and(|t| now >= t) {
            drop(slot);
            self.store
                .settle_outbox(
                    &msg.id,
                    &OutboxOutcome::GiveUp {
                        error: "expired".into(),
                    },
                )
                .await?;
            self.event(
                "fn",
                &msg,
                "message dropped: its code expired before delivery",
            )
            .await;
            crate::stats::given_up(&msg.channel);
            return Ok(());
        }
        let opened = self.secret.open(SEAL_PURPOSE, &msg.payload);
        let payload = match (msg.channel.as_str(), opened) {
            ("email", Ok(p)) => QueuedEmail::from_bytes(&p).map(Payload::Email),
            ("sms", Ok(p)) => SmsMessage::from_bytes(&p)
                .map(Payload::Sms)
                .map_err(|e| e.to_string()),
            (_, Err(e)) => Err(e.to_string()),
            (other, Ok(_)) => Err(format!("unknown channel {other:?}")),
        };
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                drop(slot);
                self.store
                    .settle_outbox(&msg.id, &OutboxOutcome::GiveUp { error: e.clone() })
                    .await?;
                self.event("fn", &msg, &format!("message unreadable: {e}"))
                    .await;
                crate::stats::given_up(&msg.channel);
                return Ok(());
            }
        };
        let started = std::time::Instant::now();
        // Boxed: an SMTP conversation's future is kilobytes, and this task's future (moved
        // whole on its way into the task, and again when it ends) would carry it otherwise.
        let sent = match &payload {
            Payload::Email(email) => Box::pin(self.mailer.send(email)).await,
            Payload::Sms(sms) => Box::pin(self.send_sms(sms, now)).await,
        };
        drop(slot);
        let what = &msg.channel;
        match sent {
            Ok(()) => {
                self.store
                    .settle_outbox(&msg.id, &OutboxOutcome::Delivered)
                    .await?;
                // Queued times are whole seconds; the send itself is timed precisely.
                crate::stats::delivered(
                    what,
                    (now - msg.created_at).max(0) as f64 + started.elapsed().as_secs_f64(),
                );
                tracing::info!(
                    outbox_id = %msg.id,
                    attempts = msg.attempts,
                    queued_secs = now - msg.created_at,
                    send_ms = started.elapsed().as_millis() as u64,
                    channel = %what,
                    "message delivered"
                );
            }
            Err(DeliveryError::Transient(e)) if msg.attempts < self.options.max_attempts => {
                let at = now + self.backoff(msg.attempts);
                tracing::warn!(outbox_id = %msg.id, attempts = msg.attempts, retry_at = at, error = %e, channel = %what, "delivery failed; will retry");
                crate::stats::retried(what);
                self.store
                    .settle_outbox(&msg.id, &OutboxOutcome::Retry { at, error: e })
                    .await?;
            }
            Err(e) => {
                tracing::warn!(outbox_id = %msg.id, attempts = msg.attempts, error = %e, channel = %what, "delivery given up");
                crate::stats::given_up(what);
                self.store
                    .settle_outbox(
                        &msg.id,
                        &OutboxOutcome::GiveUp {
                            error: e.to_string(),
                        },
                    )
                    .await?;
                self.event("fn", &msg, &format!("delivery given up: {e}"))
                    .await;
            }
        }
        Ok(())
    }

    /// Sends an SMS through the provider the database names (set in the dashboard, the API or
    /// the CLI; read at each message, so a change applies at once on every node), else through
    /// the configuration file's.
    async fn send_sms(&self, sms: &SmsMessage, now: i64) -> Result<(), DeliveryError> {
        let stored = self
            .store
            .get_connection("sms")
            .await
            .map_err(|e| DeliveryError::Transient(format!("cannot read the sms connection: {e}")))?
            .and_then(|c| c.settings.sms_provider);
        match stored {
            None => self.sms.send(sms, now).await,
            Some(p) => {
                let provider = crate::sms::provider_from_settings(&p, &self.secret)
                    .map_err(DeliveryError::Permanent)?;
                self.sms.send_with(&provider, sms, now).await
            }
        }
    }

    /// Exponential backoff with up to 25 % jitter, capped at 15 minutes.
    fn backoff(&self, attempts: i64) -> i64 {
        let exp = attempts.clamp(1, 10) - 1;
        let base = (self.options.base_backoff_secs << exp).min(900);
        base + i64::from(below(self.rng.as_ref(), (base as u32 / 4).max(1)))
    }

    async fn event(&self, kind: &str, msg: &OutboxMessage, description: &str) {
        let e = Event {
            id: ordered_id(self.clock.now_ms(), self.rng.as_ref()),
            at: self.clock.now(),
            kind: kind.into(),
            client_id: None,
            connection: Some(msg.channel.clone()),
            user_id: None,
            ip: None,
            user_agent: None,
            description: format!("outbox {}: {description}", msg.id),
        };
        if let Err(err) = self.store.record_event(&e).await {
            tracing::warn!(error = %err, "could not record an outbox event");
        }
    }
}

fn log_settle(r: Result<anyhow::Result<()>, tokio::task::JoinError>) {
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "settling an outbox message failed; its lease will expire")
        }
        Err(e) => tracing::warn!(error = %e, "an outbox delivery task failed"),
    }
}
