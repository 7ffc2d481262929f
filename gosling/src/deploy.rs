//! `deploy`, `rollback` and `status` over a [`StateStore`] and an [`ObjectStore`].
//!
//! A deployment is recorded first (`pending`, its IR and plan stored as objects), then the
//! webhooks are registered, then one [`StateStore::apply_deployment`] makes it current. A
//! failure at any step leaves the previous deployment current and the tables consistent
//! (Property 32), and marks the new record `failed`.

use crate::gitlab::{GitLab, GitLabError, HookEvents, Retry};
use crate::plan::{self, Plan, Registered};
use chrono::{DateTime, Utc};
use fly_ir::Deployment;
use gosling_state::{
    ApplyDeployment, AuditLog, Cipher, CurrentDeployment, DeploymentPlan, EggRecord, Expect,
    JobRecord, ObjectStore, PlanStatus, SecretString, StateError, StateStore, Versioned,
};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Why a deployment, rollback or status failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The state or object store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A GitLab call failed.
    #[error(transparent)]
    GitLab(#[from] GitLabError),
    /// The deployment was recorded but not applied.
    #[error("deployment v{version} failed and is marked failed; {current} stays current. {cause}")]
    Failed {
        /// The failed version.
        version: u64,
        /// What is current instead.
        current: String,
        /// Why it failed.
        cause: String,
    },
    /// A stored deployment cannot be read back.
    #[error("deployment {id}: {reason}")]
    Stored {
        /// Its id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The request makes no sense in this state.
    #[error("{0}")]
    Refused(String),
}

/// What deploy, rollback and status need.
pub struct Context<'a> {
    /// The state store.
    pub store: &'a dyn StateStore,
    /// The object store.
    pub objects: &'a dyn ObjectStore,
    /// The Nest (to refuse a key file inside it).
    pub nest: PathBuf,
    /// GitLab token (webhooks are registered only with a token and a target URL).
    pub gitlab_token: Option<SecretString>,
    /// Where GitLab sends job events (MotherGoose).
    pub webhook_url: Option<String>,
    /// The webhook secret given in the settings.
    pub webhook_secret: Option<SecretString>,
    /// `GOSLING_STATE_KEY`, if set.
    pub state_key: Option<SecretString>,
    /// The key file for secrets at rest.
    pub state_key_file: PathBuf,
    /// Retry policy for GitLab.
    pub retry: Retry,
    /// Who is acting (for the audit log).
    pub actor: String,
    /// Progress steps (shown on a terminal only).
    pub progress: &'a (dyn Fn(&str) + Sync),
    /// Notes the user must see (a key file created, a secret generated).
    pub note: &'a (dyn Fn(&str) + Sync),
}

impl Context<'_> {
    fn hook_target(&self) -> Option<&str> {
        match (&self.gitlab_token, &self.webhook_url) {
            (Some(_), Some(u)) => Some(u.as_str()),
            _ => None,
        }
    }
}

/// What `deploy` did.
#[derive(Debug)]
pub enum DeployOutcome {
    /// `--dry-run`: the plan; nothing was written.
    DryRun(Plan),
    /// Nothing to do.
    NoChanges(Plan),
    /// Applied.
    Applied {
        /// The new version.
        version: u64,
        /// Its plan.
        plan: Plan,
        /// Whether webhooks were registered (false: not configured).
        webhooks: bool,
    },
}

/// What `rollback` did.
#[derive(Debug)]
pub struct RollbackOutcome {
    /// The version made current.
    pub to: u64,
    /// The version replaced.
    pub from: u64,
    /// The changes.
    pub plan: Plan,
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    gosling_state::hex(&sha2::Sha256::digest(bytes))
}

/// The deployed IR of a deployment record, checked against its hash.
pub async fn load_ir(
    objects: &dyn ObjectStore,
    p: &DeploymentPlan,
) -> Result<Deployment, DeployError> {
    gosling_fleet::load_ir(objects, p)
        .await
        .map_err(|e| match e {
            gosling_fleet::DeployedError::State(e) => DeployError::State(e),
            gosling_fleet::DeployedError::Stored { id, reason } => {
                DeployError::Stored { id, reason }
            }
        })
}

fn registered(p: Option<&DeploymentPlan>) -> Registered {
    p.and_then(|p| p.metadata.get("webhooks"))
        .and_then(|w| serde_json::from_value(w.clone()).ok())
        .unwrap_or_default()
}

/// The `eggs` table rows for a deployment.
pub fn egg_records(ir: &Deployment, version: u64, now: DateTime<Utc>) -> Vec<EggRecord> {
    ir.eggs
        .iter()
        .map(|e| EggRecord {
            name: e.name.clone(),
            config: serde_json::to_value(e).unwrap_or(Value::Null),
            config_hash: e.config_hash.clone(),
            deployment_version: version,
            created_at: now,
            updated_at: now,
        })
        .collect()
}

/// The `jobs` table rows for a deployment.
pub fn job_records(ir: &Deployment, version: u64, now: DateTime<Utc>) -> Vec<JobRecord> {
    ir.jobs
        .iter()
        .map(|j| JobRecord {
            name: j.name.clone(),
            schedule: j.schedule.expression.clone(),
            last_run: None,
            next_run: j.schedule.next_after(now),
            status: "scheduled".into(),
            config: serde_json::to_value(j).unwrap_or(Value::Null),
            config_hash: j.config_hash.clone(),
            deployment_version: version,
            scheduled_for: None,
            attempt: 0,
            last_result: None,
            notified: false,
        })
        .collect()
}

struct Current {
    pointer: Versioned<CurrentDeployment>,
    plan: Versioned<DeploymentPlan>,
}

async fn current(store: &dyn StateStore) -> Result<Option<Current>, DeployError> {
    let Some(pointer) = store.current().await? else {
        return Ok(None);
    };
    let plan = store
        .plan(&pointer.item.plan_id)
        .await?
        .ok_or_else(|| DeployError::Stored {
            id: pointer.item.plan_id.clone(),
            reason: "the current deployment's record is missing".into(),
        })?;
    Ok(Some(Current { pointer, plan }))
}

/// The state encryption key: `GOSLING_STATE_KEY`, else the key file, else a new key file.
pub fn state_cipher(ctx: &Context<'_>) -> Result<Cipher, DeployError> {
    match Cipher::load(
        ctx.state_key.as_ref().map(SecretString::expose),
        &ctx.state_key_file,
        Some(&ctx.nest),
    )? {
        Some((c, _)) => Ok(c),
        None => {
            let c = Cipher::create_key_file(&ctx.state_key_file, Some(&ctx.nest))?;
            (ctx.note)(&format!(
                "created the state encryption key {} (keep it safe; it is not in the Nest)",
                ctx.state_key_file.display()
            ));
            Ok(c)
        }
    }
}

/// The sealed secret MotherGoose checks webhooks against.
pub const WEBHOOK_SECRET: &str = "webhook_secret";
/// Its sealing context.
pub const WEBHOOK_SECRET_CONTEXT: &str = "meta/webhook_secret";

/// The webhook secret, kept sealed in the store where MotherGoose reads it: the one given
/// in the settings (stored when it differs), else the stored one, else a new one.
pub async fn webhook_secret(ctx: &Context<'_>) -> Result<SecretString, DeployError> {
    let cipher = state_cipher(ctx)?;
    let stored = ctx.store.secret(WEBHOOK_SECRET).await?;
    let current = match &stored {
        Some(s) => Some(cipher.open(&s.item, WEBHOOK_SECRET_CONTEXT)?),
        None => None,
    };
    let secret = match (&ctx.webhook_secret, current) {
        (Some(given), Some(cur)) if *given == cur => return Ok(cur),
        (None, Some(cur)) => return Ok(cur),
        (Some(given), _) => given.clone(),
        (None, None) => SecretString::new(Cipher::generate_key()),
    };
    let expect = stored.map_or(Expect::Absent, |s| Expect::Version(s.version));
    ctx.store
        .put_secret(
            WEBHOOK_SECRET,
            &cipher.seal(&secret, WEBHOOK_SECRET_CONTEXT)?,
            expect,
        )
        .await?;
    (ctx.note)("stored the webhook secret encrypted in the state store (`gosling webhook-secret` shows it)");
    Ok(secret)
}

async fn sync_hooks(
    ctx: &Context<'_>,
    plan: &Plan,
    old: &Registered,
    ir: &Deployment,
) -> Result<Registered, DeployError> {
    // Created even without GitLab settings: a hook can then be set up by hand.
    let secret = webhook_secret(ctx).await?;
    let (Some(token), Some(target)) = (&ctx.gitlab_token, ctx.hook_target()) else {
        return Ok(old.clone());
    };
    let gitlab = GitLab::new(token.clone(), ctx.retry);
    if let Some(old_target) = old.target.as_deref().filter(|t| *t != target) {
        for h in &old.projects {
            (ctx.progress)(&format!(
                "removing the old webhook of project {}",
                h.project_id
            ));
            gitlab
                .remove_hook(&h.gitlab_url, h.project_id, old_target)
                .await?;
        }
    }
    for h in &plan.hooks_ensure {
        (ctx.progress)(&format!(
            "registering the webhook of project {}",
            h.project_id
        ));
        gitlab
            .ensure_hook(
                &h.gitlab_url,
                h.project_id,
                target,
                &secret,
                HookEvents::ALL,
            )
            .await?;
    }
    for h in &plan.hooks_remove {
        (ctx.progress)(&format!("removing the webhook of project {}", h.project_id));
        gitlab
            .remove_hook(&h.gitlab_url, h.project_id, target)
            .await?;
    }
    Ok(Registered {
        target: Some(target.to_string()),
        projects: plan::hook_targets(ir),
    })
}

async fn mark_failed(ctx: &Context<'_>, id: &str, cause: &str) -> Option<String> {
    let now = Utc::now();
    let result: Result<(), StateError> = async {
        if let Some(mut p) = ctx.store.plan(id).await? {
            p.item.status = PlanStatus::Failed;
            if let Value::Object(m) = &mut p.item.metadata {
                m.insert("error".into(), Value::String(cause.to_string()));
            }
            ctx.store
                .put_plan(&p.item, Expect::Version(p.version))
                .await?;
        }
        ctx.store
            .append_audit(&AuditLog::new(
                now,
                &ctx.actor,
                "deploy_failed",
                "deployment",
                id,
                json!({ "error": cause }),
            ))
            .await
    }
    .await;
    result.err().map(|e| e.to_string())
}

/// Plans the deployment of `ir` and, unless `dry_run`, applies it.
pub async fn deploy(
    ctx: &Context<'_>,
    ir: &Deployment,
    dry_run: bool,
) -> Result<DeployOutcome, DeployError> {
    (ctx.progress)("reading the current deployment");
    let cur = current(ctx.store).await?;
    let old_ir = match &cur {
        Some(c) => Some(load_ir(ctx.objects, &c.plan.item).await?),
        None => None,
    };
    let old_hooks = registered(cur.as_ref().map(|c| &c.plan.item));
    let plan = plan::compute(
        cur.as_ref().map(|c| c.plan.item.version),
        old_ir.as_ref(),
        &old_hooks,
        ir,
        ctx.hook_target(),
    );
    if dry_run {
        return Ok(DeployOutcome::DryRun(plan));
    }
    if plan.is_empty() {
        return Ok(DeployOutcome::NoChanges(plan));
    }
    let now = Utc::now();
    let version = ctx
        .store
        .plans()
        .await?
        .last()
        .map(|p| p.item.version + 1)
        .unwrap_or(1);
    let id = DeploymentPlan::id_for(version);
    (ctx.progress)("storing the IR and the plan");
    let ir_text = ir.to_json();
    let hash = sha256(ir_text.as_bytes());
    let ir_key = format!("deployments/ir/{hash}.json");
    let plan_key = format!("deployments/plans/{id}.json");
    ctx.objects.put(&ir_key, ir_text.into_bytes()).await?;
    let plan_json = serde_json::to_vec_pretty(&plan).unwrap_or_default();
    ctx.objects.put(&plan_key, plan_json).await?;
    let (add, change, remove) = plan.counts();
    let mut record = DeploymentPlan {
        id: id.clone(),
        version,
        egg_name: None,
        plan_type: "nest".into(),
        plan_key,
        ir_key,
        config_hash: hash,
        created_at: now,
        applied_at: None,
        status: PlanStatus::Pending,
        rollback_plan_id: cur.as_ref().map(|c| c.plan.item.id.clone()),
        metadata: json!({
            "actor": ctx.actor,
            "summary": { "add": add, "change": change, "remove": remove, "unchanged": plan.unchanged },
            "eggs": ir.eggs.len(),
            "jobs": ir.jobs.len(),
            "webhooks": old_hooks,
        }),
    };
    let record_version = match ctx.store.put_plan(&record, Expect::Absent).await {
        Ok(v) => v,
        Err(StateError::Conflict { .. }) => {
            return Err(DeployError::Refused(format!(
            "another deployment recorded v{version} at the same time; run `gosling deploy` again"
        )))
        }
        Err(e) => return Err(e.into()),
    };
    let current_name = cur
        .as_ref()
        .map(|c| format!("v{}", c.plan.item.version))
        .unwrap_or_else(|| "nothing".into());
    let fail = |cause: String| async move {
        let extra = mark_failed(ctx, &DeploymentPlan::id_for(version), &cause).await;
        DeployError::Failed {
            version,
            current: current_name.clone(),
            cause: match extra {
                Some(e) => format!("{cause} (and marking it failed also failed: {e})"),
                None => cause,
            },
        }
    };
    let hooks = match sync_hooks(ctx, &plan, &old_hooks, ir).await {
        Ok(h) => h,
        Err(e) => return Err(fail(e.to_string()).await),
    };
    if let Value::Object(m) = &mut record.metadata {
        m.insert(
            "webhooks".into(),
            serde_json::to_value(&hooks).unwrap_or(Value::Null),
        );
    }
    (ctx.progress)("applying the deployment");
    let applied = ctx
        .store
        .apply_deployment(ApplyDeployment {
            target: Versioned {
                item: record,
                version: record_version,
            },
            previous: cur.as_ref().map(|c| (c.plan.clone(), PlanStatus::Applied)),
            expected_current: cur.as_ref().map(|c| c.pointer.version),
            eggs: egg_records(ir, version, now),
            jobs: job_records(ir, version, now),
            audit: AuditLog::new(
                now,
                &ctx.actor,
                "deploy",
                "deployment",
                &id,
                json!({ "version": version, "add": add, "change": change, "remove": remove }),
            ),
            now,
        })
        .await;
    if let Err(e) = applied {
        return Err(fail(e.to_string()).await);
    }
    Ok(DeployOutcome::Applied {
        version,
        webhooks: ctx.hook_target().is_some(),
        plan,
    })
}

/// Makes an earlier deployment current again from its stored IR (no recompiling).
pub async fn rollback(ctx: &Context<'_>, to: Option<u64>) -> Result<RollbackOutcome, DeployError> {
    let cur = current(ctx.store).await?.ok_or_else(|| {
        DeployError::Refused("nothing is deployed yet, so there is nothing to roll back".into())
    })?;
    let from = cur.plan.item.version;
    let target_id = match to {
        Some(v) => DeploymentPlan::id_for(v),
        None => cur.plan.item.rollback_plan_id.clone().ok_or_else(|| {
            DeployError::Refused(format!(
                "v{from} is the first deployment: there is nothing earlier to roll back to"
            ))
        })?,
    };
    let target = ctx.store.plan(&target_id).await?.ok_or_else(|| {
        DeployError::Refused(format!(
            "there is no deployment {target_id}; `gosling status` lists them"
        ))
    })?;
    if target.item.id == cur.plan.item.id {
        return Err(DeployError::Refused(format!("v{from} is already current")));
    }
    if !matches!(
        target.item.status,
        PlanStatus::Applied | PlanStatus::RolledBack
    ) {
        return Err(DeployError::Refused(format!(
            "v{} was never applied (it is {}): roll back to a version that was",
            target.item.version, target.item.status
        )));
    }
    (ctx.progress)("reading the stored IRs");
    let ir = load_ir(ctx.objects, &target.item).await?;
    let old_ir = load_ir(ctx.objects, &cur.plan.item).await?;
    let old_hooks = registered(Some(&cur.plan.item));
    let plan = plan::compute(
        Some(from),
        Some(&old_ir),
        &old_hooks,
        &ir,
        ctx.hook_target(),
    );
    let hooks = sync_hooks(ctx, &plan, &old_hooks, &ir).await?;
    let now = Utc::now();
    let mut item = target.item.clone();
    if let Value::Object(m) = &mut item.metadata {
        m.insert(
            "webhooks".into(),
            serde_json::to_value(&hooks).unwrap_or(Value::Null),
        );
    }
    (ctx.progress)("applying the rollback");
    ctx.store
        .apply_deployment(ApplyDeployment {
            target: Versioned {
                item,
                version: target.version,
            },
            previous: Some((cur.plan.clone(), PlanStatus::RolledBack)),
            expected_current: Some(cur.pointer.version),
            eggs: egg_records(&ir, target.item.version, now),
            jobs: job_records(&ir, target.item.version, now),
            audit: AuditLog::new(
                now,
                &ctx.actor,
                "rollback",
                "deployment",
                &target.item.id,
                json!({ "from": from, "to": target.item.version }),
            ),
            now,
        })
        .await?;
    Ok(RollbackOutcome {
        to: target.item.version,
        from,
        plan,
    })
}

/// `gosling status` as data.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The current deployment.
    pub deployment: Option<StatusDeployment>,
    /// Deployed eggs.
    pub eggs: Vec<StatusEgg>,
    /// Deployed jobs.
    pub jobs: Vec<StatusJob>,
    /// Runners per state.
    pub runners: BTreeMap<String, usize>,
    /// Every deployment, newest first.
    pub history: Vec<StatusHistory>,
    /// The live view: runners, pending work, UglyFox's decisions, recent activity.
    pub fleet: crate::fleet_view::FleetView,
}

/// The current deployment.
#[derive(Debug, Serialize)]
pub struct StatusDeployment {
    /// Version.
    pub version: u64,
    /// Applied at.
    pub applied_at: Option<DateTime<Utc>>,
    /// Current since.
    pub current_since: DateTime<Utc>,
    /// sha256 of the IR.
    pub ir_hash: String,
}

/// An egg.
#[derive(Debug, Serialize)]
pub struct StatusEgg {
    /// Name.
    pub name: String,
    /// `vm` / `serverless`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Provider.
    pub provider: String,
    /// Region.
    pub region: String,
    /// Its config hash.
    pub config_hash: String,
    /// The version that last changed it.
    pub deployment_version: u64,
}

/// A job.
#[derive(Debug, Serialize)]
pub struct StatusJob {
    /// Name.
    pub name: String,
    /// Cron.
    pub schedule: String,
    /// Next run.
    pub next_run: Option<DateTime<Utc>>,
    /// Last run.
    pub last_run: Option<DateTime<Utc>>,
    /// Status.
    pub status: String,
}

/// A deployment in the history.
#[derive(Debug, Serialize)]
pub struct StatusHistory {
    /// Version.
    pub version: u64,
    /// Status.
    pub status: String,
    /// Recorded.
    pub created_at: DateTime<Utc>,
    /// Error, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads the status.
pub async fn status(store: &dyn StateStore, now: DateTime<Utc>) -> Result<Status, DeployError> {
    let cur = current(store).await?;
    let deployment = cur.map(|c| StatusDeployment {
        version: c.plan.item.version,
        applied_at: c.plan.item.applied_at,
        current_since: c.pointer.item.since,
        ir_hash: c.plan.item.config_hash.clone(),
    });
    let text = |v: &Value, path: &[&str]| {
        let mut v = v;
        for p in path {
            v = &v[*p];
        }
        v.as_str().unwrap_or_default().to_string()
    };
    let eggs = store
        .eggs()
        .await?
        .into_iter()
        .map(|e| StatusEgg {
            kind: text(&e.item.config, &["type"]),
            provider: text(&e.item.config, &["cloud", "provider"]),
            region: text(&e.item.config, &["cloud", "region"]),
            name: e.item.name,
            config_hash: e.item.config_hash,
            deployment_version: e.item.deployment_version,
        })
        .collect();
    let jobs = store
        .jobs()
        .await?
        .into_iter()
        .map(|j| {
            let next = serde_json::from_value::<fly_ir::Job>(j.item.config.clone())
                .ok()
                .and_then(|job| job.schedule.next_after(now))
                .or(j.item.next_run);
            StatusJob {
                name: j.item.name,
                schedule: j.item.schedule,
                next_run: next,
                last_run: j.item.last_run,
                status: j.item.status,
            }
        })
        .collect();
    let mut runners = BTreeMap::new();
    for r in store.runners().await? {
        *runners.entry(r.item.state).or_insert(0) += 1;
    }
    let history = store
        .plans()
        .await?
        .into_iter()
        .rev()
        .filter(|p| p.item.plan_type == "nest")
        .map(|p| StatusHistory {
            version: p.item.version,
            status: p.item.status.to_string(),
            created_at: p.item.created_at,
            error: p
                .item
                .metadata
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
        .collect();
    Ok(Status {
        deployment,
        eggs,
        jobs,
        runners,
        history,
        fleet: crate::fleet_view::read(store, now).await?,
    })
}
