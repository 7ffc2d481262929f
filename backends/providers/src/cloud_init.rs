//! The VM runner's cloud-init: a `#cloud-config` document rendered with minijinja from
//! `templates/runner-cloud-init.yaml.j2` and a [`RunnerSpec`].
//!
//! It installs `docker.io`, `git` and `curl`, writes the runner's bootstrap to
//! `/etc/gosling/runner-RUNNER_ID.env` (mode 0600, base64 in the document so that no value
//! can break the YAML), installs the `gosling-runner@.service` unit from
//! `runner/packaging` (embedded: one copy), downloads the gosling binary, refuses it unless
//! its SHA-256 matches, and enables and starts `gosling-runner@RUNNER_ID`.
//!
//! The rendered document holds the runner's credential, so [`UserData`] never prints its
//! text (`Debug` is redacted) and nothing here logs it.

use crate::runner_env;
use base64::Engine as _;
use gosling_fleet::RunnerSpec;
use std::collections::BTreeMap;
use std::fmt;

/// The systemd unit runner mode runs under on VMs (one copy, in `runner/packaging`).
pub const RUNNER_UNIT: &str = include_str!("../../../runner/packaging/gosling-runner@.service");

/// The cloud-init template.
pub const TEMPLATE: &str = include_str!("../templates/runner-cloud-init.yaml.j2");

/// EC2's limit on user data, before base64: 16 KB.
pub const EC2_USER_DATA_MAX: usize = 16 * 1024;

/// Where the gosling binary comes from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GoslingBinary {
    /// `https://…/gosling-linux-amd64` (http or https).
    pub url: String,
    /// Its SHA-256, 64 hex digits.
    pub sha256: String,
}

/// What the cloud-init is rendered from, when there is no [`RunnerSpec`] (the OpenTofu path
/// renders the same document from its own inputs).
#[derive(Clone)]
pub struct CloudInitInput<'a> {
    /// The runner id (`[A-Za-z0-9_.-]`, at most 64 characters: it names files and a unit).
    pub runner_id: &'a str,
    /// The environment written to the runner's env file.
    pub env: BTreeMap<String, String>,
    /// The binary to install.
    pub binary: &'a GoslingBinary,
    /// Public SSH keys for a `gosling` admin user (none: no user is added).
    pub ssh_authorized_keys: &'a [String],
}

/// Why no cloud-init could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudInitError {
    /// The runner id cannot name a file and a systemd unit instance.
    #[error("runner id `{0}` cannot be used on a VM: use 1-64 characters of A-Z a-z 0-9 _ . -")]
    RunnerId(String),
    /// An environment variable name that an env file cannot hold.
    #[error(
        "environment variable name `{0}` is not valid (A-Z a-z 0-9 _, not starting with a digit)"
    )]
    EnvName(String),
    /// A bad binary URL or checksum.
    #[error("gosling binary: {0}")]
    Binary(String),
    /// An SSH key with a line break.
    #[error("an SSH public key must be one line")]
    SshKey,
    /// Larger than EC2 accepts.
    #[error("the cloud-init is {size} bytes, more than EC2's {max}-byte user data limit")]
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The template failed (a bug).
    #[error("cloud-init template: {0}")]
    Template(String),
}

/// A rendered cloud-init document. It holds the runner's credential: its `Debug` shows
/// only the size, and it is never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct UserData(String);

impl fmt::Debug for UserData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserData({} bytes, redacted)", self.0.len())
    }
}

impl UserData {
    /// The document.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (never, for a rendered document).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The document in base64, as RunInstances takes it, after checking EC2's 16 KB limit.
    pub fn ec2_base64(&self) -> Result<String, CloudInitError> {
        check_ec2_size(self)?;
        Ok(base64::engine::general_purpose::STANDARD.encode(self.0.as_bytes()))
    }
}

/// Errors unless `data` fits EC2's user data limit (16 KB before base64).
pub fn check_ec2_size(data: &UserData) -> Result<(), CloudInitError> {
    if data.len() > EC2_USER_DATA_MAX {
        return Err(CloudInitError::TooLarge {
            size: data.len(),
            max: EC2_USER_DATA_MAX,
        });
    }
    Ok(())
}

/// Whether `id` can name the env file and the unit instance (`gosling-runner@ID`).
pub fn valid_runner_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !id.starts_with(['.', '-'])
}

fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The env file systemd reads (`EnvironmentFile=`): one `NAME="value"` per line, with `"`,
/// `\`, `` ` `` and `$` escaped by a backslash; line breaks stay inside the quotes (a PEM
/// CA), which systemd's env-file parser keeps as part of the value.
pub fn env_file(env: &BTreeMap<String, String>) -> Result<String, CloudInitError> {
    let mut out = String::new();
    for (name, value) in env {
        if !valid_env_name(name) {
            return Err(CloudInitError::EnvName(name.clone()));
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            if matches!(c, '"' | '\\' | '`' | '$') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str("\"\n");
    }
    Ok(out)
}

fn check_binary(b: &GoslingBinary) -> Result<(), CloudInitError> {
    let url_ok = (b.url.starts_with("https://") || b.url.starts_with("http://"))
        && b.url.len() > "https://".len()
        && !b.url.chars().any(|c| c.is_whitespace() || c.is_control());
    if !url_ok {
        return Err(CloudInitError::Binary(format!(
            "`{}` is not an http(s) URL",
            b.url
        )));
    }
    if b.sha256.len() != 64 || !b.sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(CloudInitError::Binary(
            "the SHA-256 must be 64 hexadecimal digits".into(),
        ));
    }
    Ok(())
}

/// `'…'` for a POSIX shell (a `'` becomes `'\''`).
fn shell_quote(s: String) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn environment() -> Result<minijinja::Environment<'static>, CloudInitError> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("shell_quote", shell_quote);
    env.add_template("runner-cloud-init.yaml", TEMPLATE)
        .map_err(|e| CloudInitError::Template(e.to_string()))?;
    Ok(env)
}

/// Renders the cloud-init from its inputs.
pub fn render_input(input: &CloudInitInput<'_>) -> Result<UserData, CloudInitError> {
    if !valid_runner_id(input.runner_id) {
        return Err(CloudInitError::RunnerId(input.runner_id.to_string()));
    }
    check_binary(input.binary)?;
    if input
        .ssh_authorized_keys
        .iter()
        .any(|k| k.contains(['\n', '\r']))
    {
        return Err(CloudInitError::SshKey);
    }
    let env_text = env_file(&input.env)?;
    let env = environment()?;
    let tmpl = env
        .get_template("runner-cloud-init.yaml")
        .map_err(|e| CloudInitError::Template(e.to_string()))?;
    let text = tmpl
        .render(minijinja::context! {
            runner_id => input.runner_id,
            env_path => format!("/etc/gosling/runner-{}.env", input.runner_id),
            env_b64 => base64::engine::general_purpose::STANDARD.encode(env_text.as_bytes()),
            unit => RUNNER_UNIT.trim_end(),
            unit_instance => format!("gosling-runner@{}", input.runner_id),
            binary_url => input.binary.url.as_str(),
            binary_sha256 => input.binary.sha256.to_ascii_lowercase(),
            ssh_authorized_keys => input.ssh_authorized_keys,
        })
        // The error names the template line, never a value.
        .map_err(|e| CloudInitError::Template(e.to_string()))?;
    Ok(UserData(text))
}

/// Renders the cloud-init of the runner `spec` describes: its env file holds
/// [`runner_env`] (the bootstrap, the spec's extra environment, whether it is ephemeral).
pub fn render(
    spec: &RunnerSpec,
    binary: &GoslingBinary,
    ssh_authorized_keys: &[String],
) -> Result<UserData, CloudInitError> {
    render_input(&CloudInitInput {
        runner_id: &spec.runner_id,
        env: runner_env(spec),
        binary,
        ssh_authorized_keys,
    })
}
