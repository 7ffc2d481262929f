//! The agent's files, generated from the [`RunnerConfig`] with a TOML serialiser:
//! `config.toml` (mode 0600: it holds the runner token) and, when the egg uses Rift's
//! Docker proxy, a Docker `config.json` carrying the `X-Rift-Token` header.
//!
//! - `[[runners]]`: url, token, executor `docker`, `builds_dir`, the egg's `environment`
//!   (Property 29), `[runners.docker]` image and privileged;
//! - `[runners.cache]` (`Type = "s3"`, `Shared = true`) and `[runners.cache.s3]` only when
//!   the runner has a cache (Rift): without one the agent never contacts a cache
//!   (Property 22);
//! - with Rift's Docker proxy, jobs get `DOCKER_HOST` and `DOCKER_CONFIG` pointing at a
//!   read-only volume with `config.json` (`{"HttpHeaders":{"X-Rift-Token":…}}`) and, when
//!   Rift's CA is given and TLS is on, `ca.pem` with `DOCKER_TLS_VERIFY=1`.

use gosling_api::RunnerConfig;
use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where jobs find the Docker client configuration (a read-only volume).
pub const JOB_DOCKER_DIR: &str = "/gosling/docker";
/// The build folder inside job containers.
pub const BUILDS_DIR: &str = "/builds";

/// Why the files could not be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A runner without a GitLab token cannot take GitLab jobs.
    #[error("MotherGoose gave this runner no GitLab runner token (is it a job runner? use --job)")]
    NoToken,
    /// An environment variable name gitlab-runner cannot carry.
    #[error("the egg's environment variable name `{0}` is not usable (empty, or with `=` or NUL)")]
    BadName(String),
    /// The TOML serialiser refused.
    #[error("writing config.toml: {0}")]
    Toml(String),
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// How the agent will run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// The runner's folder (host paths of volumes are under it).
    pub work_dir: PathBuf,
    /// Where `gitlab-runner run` serves its metrics (`None` for `run-single`, which has no
    /// metrics server).
    pub listen_address: Option<String>,
}

#[derive(Serialize)]
struct ConfigToml {
    concurrent: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_address: Option<String>,
    runners: Vec<RunnerToml>,
}

#[derive(Serialize)]
struct RunnerToml {
    name: String,
    url: String,
    token: String,
    executor: &'static str,
    builds_dir: &'static str,
    environment: Vec<String>,
    docker: DockerToml,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<CacheToml>,
}

#[derive(Serialize)]
struct DockerToml {
    image: String,
    privileged: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CacheToml {
    #[serde(rename = "Type")]
    kind: &'static str,
    /// The egg's prefix: runners of one egg share a cache, other eggs' keys are elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    shared: bool,
    #[serde(rename = "s3")]
    s3: S3Toml,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct S3Toml {
    server_address: String,
    access_key: String,
    secret_key: String,
    bucket_name: String,
    insecure: bool,
    authentication_type: &'static str,
    path_style: bool,
}

/// The generated files, not yet written. No `Debug`: they hold secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentFiles {
    /// config.toml.
    pub config_toml: String,
    /// The Docker `config.json` for jobs (Rift's Docker proxy), if any.
    pub docker_config: Option<String>,
    /// Rift's CA for the Docker client, if any.
    pub docker_ca: Option<String>,
}

/// The `[[runners]]` name runner mode gives the agent (`run-single --runner NAME`).
pub fn runner_name(config: &RunnerConfig) -> String {
    config.runner_id.clone()
}

/// Generates the agent's files from `config`.
pub fn render(config: &RunnerConfig, opts: &RenderOptions) -> Result<AgentFiles, RenderError> {
    let token = config.gitlab_token.clone().ok_or(RenderError::NoToken)?;
    let egg = &config.egg;
    let mut environment = Vec::new();
    for (k, v) in &egg.environment {
        if k.is_empty() || k.contains(['=', '\0']) {
            return Err(RenderError::BadName(k.clone()));
        }
        environment.push(format!("{k}={v}"));
    }
    let mut volumes = Vec::new();
    let mut docker_config = None;
    let mut docker_ca = None;
    let cache = config.cache.as_ref().map(|c| {
        if let Some(host) = &c.docker_host {
            let mut add = |k: &str, v: &str| {
                if !egg.environment.contains_key(k) {
                    environment.push(format!("{k}={v}"));
                }
            };
            add("DOCKER_HOST", host);
            add("DOCKER_CONFIG", JOB_DOCKER_DIR);
            if let (Some(ca), false) = (&c.ca_pem, c.insecure) {
                add("DOCKER_TLS_VERIFY", "1");
                add("DOCKER_CERT_PATH", JOB_DOCKER_DIR);
                docker_ca = Some(ca.clone());
            }
            let token = c.docker_token.clone().unwrap_or_default();
            docker_config =
                Some(serde_json::json!({ "HttpHeaders": { "X-Rift-Token": token } }).to_string());
            volumes.push(format!(
                "{}:{JOB_DOCKER_DIR}:ro",
                opts.work_dir.join("docker").display()
            ));
        }
        CacheToml {
            kind: "s3",
            path: c.path.clone(),
            shared: true,
            s3: S3Toml {
                server_address: c.server_address.clone(),
                access_key: c.access_key.clone(),
                secret_key: c.secret_key.clone(),
                bucket_name: c.bucket.clone(),
                insecure: c.insecure,
                authentication_type: "access-key",
                path_style: true,
            },
        }
    });
    let doc = ConfigToml {
        concurrent: if config.ephemeral {
            1
        } else {
            egg.runner.concurrent.max(1)
        },
        listen_address: opts.listen_address.clone(),
        runners: vec![RunnerToml {
            name: runner_name(config),
            url: config.gitlab_url.clone(),
            token,
            executor: "docker",
            builds_dir: BUILDS_DIR,
            environment,
            docker: DockerToml {
                image: egg.runner.image.clone(),
                privileged: egg.runner.privileged,
                volumes,
            },
            cache,
        }],
    };
    let body = toml::to_string(&doc).map_err(|e| RenderError::Toml(e.to_string()))?;
    Ok(AgentFiles {
        config_toml: format!(
            "# Written by `gosling runner` for runner {} (egg {}); rewritten on every start.\n{body}",
            config.runner_id, egg.name
        ),
        docker_config,
        docker_ca,
    })
}

/// The path of config.toml in the runner's folder.
pub fn config_path(work_dir: &Path) -> PathBuf {
    work_dir.join("config.toml")
}

impl AgentFiles {
    /// Writes the files under `work_dir` (each atomically, mode 0600) and removes a
    /// Docker configuration that is no longer wanted.
    pub fn write(&self, work_dir: &Path) -> Result<(), RenderError> {
        write_private(&config_path(work_dir), self.config_toml.as_bytes())?;
        let docker = work_dir.join("docker");
        match &self.docker_config {
            Some(json) => {
                create_private_dir(&docker)?;
                write_private(&docker.join("config.json"), json.as_bytes())?;
            }
            None => {
                let _ = std::fs::remove_file(docker.join("config.json"));
            }
        }
        match &self.docker_ca {
            Some(ca) => write_private(&docker.join("ca.pem"), ca.as_bytes())?,
            None => {
                let _ = std::fs::remove_file(docker.join("ca.pem"));
            }
        }
        Ok(())
    }
}

/// Creates `dir` (and parents) with mode 0700 for the last one.
pub fn create_private_dir(dir: &Path) -> Result<(), RenderError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| RenderError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Writes `bytes` to `path` through a temporary file (mode 0600) and a rename, so a reader
/// sees the old or the new content, never a mix.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), RenderError> {
    let io = |source| RenderError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}
