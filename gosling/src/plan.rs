//! What a deployment changes: eggs, jobs and UglyFox added, changed (by `config_hash`) or
//! removed, and the GitLab webhooks to create, update or remove — rendered like `tofu plan`.

use fly_ir::Deployment;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Added, changed or removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// New.
    Add,
    /// Its configuration changed.
    Change,
    /// Gone.
    Remove,
}

impl Action {
    fn sign(self) -> char {
        match self {
            Action::Add => '+',
            Action::Change => '~',
            Action::Remove => '-',
        }
    }
}

/// One changed attribute, by JSON path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// `resources.cpu`, `runner.tags`, …
    pub path: String,
    /// Before (JSON), if it existed.
    pub old: Option<String>,
    /// After (JSON), if it exists.
    pub new: Option<String>,
}

/// A changed egg, job or the UglyFox policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemChange {
    /// `egg`, `job` or `uglyfox`.
    pub kind: String,
    /// Its name (`uglyfox` for the policy).
    pub name: String,
    /// What happens.
    pub action: Action,
    /// `config_hash` before.
    pub old_hash: Option<String>,
    /// `config_hash` after.
    pub new_hash: Option<String>,
    /// A one-line summary (type, cloud, project, schedule).
    pub summary: String,
    /// The attributes that change (for `change`).
    pub fields: Vec<FieldChange>,
}

/// A project webhook: one per GitLab project any egg serves.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HookTarget {
    /// GitLab base URL.
    pub gitlab_url: String,
    /// Project id.
    pub project_id: u64,
}

/// Webhooks as registered by a deployment (kept in its metadata).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// The URL the hooks point to.
    pub target: Option<String>,
    /// The projects that have one.
    pub projects: Vec<HookTarget>,
}

/// Everything a deployment changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The deployed version it starts from.
    pub from_version: Option<u64>,
    /// Eggs, jobs and UglyFox that change, in that order, by name.
    pub items: Vec<ItemChange>,
    /// Items that stay as they are.
    pub unchanged: usize,
    /// Hooks to create or update.
    pub hooks_ensure: Vec<HookTarget>,
    /// Hooks to remove.
    pub hooks_remove: Vec<HookTarget>,
    /// The URL hooks point to (`None`: webhook registration is not configured).
    pub hook_target: Option<String>,
}

impl Plan {
    /// Counts of added, changed, removed items.
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |a| self.items.iter().filter(|i| i.action == a).count();
        (n(Action::Add), n(Action::Change), n(Action::Remove))
    }

    /// True when nothing at all would change.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.hooks_ensure.is_empty() && self.hooks_remove.is_empty()
    }
}

fn sha(v: &impl Serialize) -> String {
    use sha2::Digest;
    let text = serde_json::to_string(v).unwrap_or_default();
    gosling_state::hex(&sha2::Sha256::digest(text.as_bytes()))
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    // A schedule is shown as written, not as its expanded fields.
    if prefix == "schedule" {
        if let Some(e) = v.get("expression") {
            out.insert(prefix.to_string(), e.to_string());
            return;
        }
    }
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                if prefix.is_empty() && k == "config_hash" {
                    continue;
                }
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.to_string());
        }
    }
}

/// The attributes that differ between two JSON values.
pub fn field_changes(old: &Value, new: &Value) -> Vec<FieldChange> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", old, &mut a);
    flatten("", new, &mut b);
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| FieldChange {
            path: k.clone(),
            old: a.get(k).cloned(),
            new: b.get(k).cloned(),
        })
        .collect()
}

fn egg_summary(e: &fly_ir::Egg) -> String {
    format!(
        "{}, {} {}, project {}",
        serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        serde_json::to_value(e.cloud.provider)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        e.cloud.region,
        e.gitlab.project_id
    )
}

fn diff<T: Serialize>(
    kind: &str,
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &str,
    hash: impl Fn(&T) -> &str,
    summary: impl Fn(&T) -> String,
    plan: &mut Plan,
) {
    let old: BTreeMap<&str, &T> = old.iter().map(|x| (name(x), x)).collect();
    let new_map: BTreeMap<&str, &T> = new.iter().map(|x| (name(x), x)).collect();
    let names: BTreeSet<&str> = old.keys().chain(new_map.keys()).copied().collect();
    for n in names {
        let change = match (old.get(n), new_map.get(n)) {
            (None, Some(x)) => ItemChange {
                kind: kind.into(),
                name: n.into(),
                action: Action::Add,
                old_hash: None,
                new_hash: Some(hash(x).into()),
                summary: summary(x),
                fields: Vec::new(),
            },
            (Some(x), None) => ItemChange {
                kind: kind.into(),
                name: n.into(),
                action: Action::Remove,
                old_hash: Some(hash(x).into()),
                new_hash: None,
                summary: summary(x),
                fields: Vec::new(),
            },
            (Some(a), Some(b)) if hash(a) != hash(b) => ItemChange {
                kind: kind.into(),
                name: n.into(),
                action: Action::Change,
                old_hash: Some(hash(a).into()),
                new_hash: Some(hash(b).into()),
                summary: summary(b),
                fields: field_changes(
                    &serde_json::to_value(a).unwrap_or_default(),
                    &serde_json::to_value(b).unwrap_or_default(),
                ),
            },
            _ => {
                plan.unchanged += 1;
                continue;
            }
        };
        plan.items.push(change);
    }
}

/// The projects that need a webhook for `ir`.
pub fn hook_targets(ir: &Deployment) -> Vec<HookTarget> {
    let set: BTreeSet<HookTarget> = ir
        .eggs
        .iter()
        .map(|e| HookTarget {
            gitlab_url: e.gitlab.url.trim_end_matches('/').to_string(),
            project_id: e.gitlab.project_id,
        })
        .collect();
    set.into_iter().collect()
}

/// The plan from `old` (the deployed IR and its registered hooks) to `new`. `hook_target`
/// is the webhook URL when registration is configured.
pub fn compute(
    from_version: Option<u64>,
    old: Option<&Deployment>,
    registered: &Registered,
    new: &Deployment,
    hook_target: Option<&str>,
) -> Plan {
    let mut plan = Plan {
        from_version,
        hook_target: hook_target.map(str::to_string),
        ..Plan::default()
    };
    let empty = Deployment {
        ir_version: fly_ir::IR_VERSION,
        eggs: Vec::new(),
        jobs: Vec::new(),
        uglyfox: None,
        rifts: Vec::new(),
        source_map: BTreeMap::new(),
    };
    let old = old.unwrap_or(&empty);
    diff(
        "egg",
        &old.eggs,
        &new.eggs,
        |e| &e.name,
        |e| &e.config_hash,
        egg_summary,
        &mut plan,
    );
    diff(
        "job",
        &old.jobs,
        &new.jobs,
        |j| &j.name,
        |j| &j.config_hash,
        |j| format!("schedule \"{}\"", j.schedule.expression),
        &mut plan,
    );
    let (a, b) = (old.uglyfox.as_ref(), new.uglyfox.as_ref());
    let uf = |u: &fly_ir::UglyFox| {
        format!(
            "apex {}..{}, nadir {}..{}, {} rule{}",
            u.apex.min_count,
            u.apex.max_count,
            u.nadir.min_count,
            u.nadir.max_count,
            u.policies.len(),
            if u.policies.len() == 1 { "" } else { "s" }
        )
    };
    let (ha, hb) = (a.map(sha), b.map(sha));
    match (a, b) {
        (None, None) => {}
        (Some(x), Some(y)) if ha == hb => {
            let _ = (x, y);
            plan.unchanged += 1;
        }
        _ => plan.items.push(ItemChange {
            kind: "uglyfox".into(),
            name: "uglyfox".into(),
            action: match (a, b) {
                (None, _) => Action::Add,
                (_, None) => Action::Remove,
                _ => Action::Change,
            },
            old_hash: ha,
            new_hash: hb.clone(),
            summary: b.or(a).map(uf).unwrap_or_default(),
            fields: match (a, b) {
                (Some(x), Some(y)) => field_changes(
                    &serde_json::to_value(x).unwrap_or_default(),
                    &serde_json::to_value(y).unwrap_or_default(),
                ),
                _ => Vec::new(),
            },
        }),
    }
    if hook_target.is_none() {
        return plan;
    }
    let wanted = hook_targets(new);
    let have: BTreeSet<&HookTarget> = registered.projects.iter().collect();
    let retarget = hook_target.is_some() && registered.target.as_deref() != hook_target;
    plan.hooks_ensure = wanted
        .iter()
        .filter(|h| retarget || !have.contains(h))
        .cloned()
        .collect();
    let wanted: BTreeSet<&HookTarget> = wanted.iter().collect();
    plan.hooks_remove = registered
        .projects
        .iter()
        .filter(|h| !wanted.contains(h))
        .cloned()
        .collect();
    plan
}

fn short(h: &Option<String>) -> String {
    h.as_deref()
        .map(|h| h.chars().take(12).collect())
        .unwrap_or_default()
}

/// The plan as people read it (like `tofu plan`).
pub fn render(plan: &Plan, to_version: Option<u64>) -> String {
    let mut s = String::new();
    if plan.is_empty() {
        let _ = writeln!(
            s,
            "No changes. The deployment{} matches the Nest.",
            plan.from_version
                .map(|v| format!(" v{v}"))
                .unwrap_or_default()
        );
        return s;
    }
    let from = plan
        .from_version
        .map(|v| format!("v{v}"))
        .unwrap_or_else(|| "nothing deployed".into());
    let to = to_version
        .map(|v| format!("v{v}"))
        .unwrap_or_else(|| "new".into());
    let _ = writeln!(
        s,
        "gosling will perform the following actions ({from} -> {to}):\n"
    );
    for i in &plan.items {
        let verb = match i.action {
            Action::Add => "will be created",
            Action::Change => "will be updated in place",
            Action::Remove => "will be destroyed",
        };
        let title = if i.kind == "uglyfox" {
            "uglyfox".to_string()
        } else {
            format!("{} \"{}\"", i.kind, i.name)
        };
        let _ = writeln!(s, "  # {title} {verb}");
        let _ = writeln!(s, "  {} {title} ({})", i.action.sign(), i.summary);
        match i.action {
            Action::Add => {
                let _ = writeln!(s, "      + config_hash = \"{}\"", short(&i.new_hash));
            }
            Action::Remove => {
                let _ = writeln!(s, "      - config_hash = \"{}\"", short(&i.old_hash));
            }
            Action::Change => {
                let _ = writeln!(
                    s,
                    "      ~ config_hash = \"{}\" -> \"{}\"",
                    short(&i.old_hash),
                    short(&i.new_hash)
                );
                for f in &i.fields {
                    let _ = match (&f.old, &f.new) {
                        (Some(o), Some(n)) => writeln!(s, "      ~ {} = {o} -> {n}", f.path),
                        (None, Some(n)) => writeln!(s, "      + {} = {n}", f.path),
                        (Some(o), None) => writeln!(s, "      - {} = {o}", f.path),
                        (None, None) => Ok(()),
                    };
                }
            }
        }
        s.push('\n');
    }
    let target = plan.hook_target.as_deref();
    for h in &plan.hooks_ensure {
        let _ = writeln!(
            s,
            "  + webhook on project {} at {} (job events -> {})",
            h.project_id,
            h.gitlab_url,
            target.unwrap_or("?")
        );
    }
    for h in &plan.hooks_remove {
        let _ = writeln!(
            s,
            "  - webhook on project {} at {}",
            h.project_id, h.gitlab_url
        );
    }
    if !plan.hooks_ensure.is_empty() || !plan.hooks_remove.is_empty() {
        s.push('\n');
    }
    let (a, c, r) = plan.counts();
    let _ = write!(
        s,
        "Plan: {a} to add, {c} to change, {r} to destroy ({} unchanged)",
        plan.unchanged
    );
    if target.is_some() {
        let _ = writeln!(
            s,
            "; {} webhook{} to create or update, {} to remove.",
            plan.hooks_ensure.len(),
            if plan.hooks_ensure.len() == 1 {
                ""
            } else {
                "s"
            },
            plan.hooks_remove.len()
        );
    } else {
        let _ = writeln!(
            s,
            ".\nWebhooks: not configured (no GitLab token or webhook URL), so registration is skipped."
        );
    }
    s
}
