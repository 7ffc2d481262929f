//! Eggs and runner specs for the provider tests.
#![allow(dead_code)]

use gosling_fleet::{Bootstrap, RunnerSpec};
use gosling_providers::GoslingBinary;
use gosling_state::SecretString;
use std::collections::BTreeMap;

/// The credential every test runner gets (asserted never to leak).
pub const CREDENTIAL: &str = "gosling-test-credential-9f8e7d6c5b4a";

/// An egg of `provider` and `kind` with the language's defaults.
pub fn egg(name: &str, provider: fly_ir::Provider, kind: fly_ir::RunnerKind) -> fly_ir::Egg {
    fly_ir::Egg {
        name: name.into(),
        kind,
        cloud: fly_ir::Cloud {
            provider,
            region: match provider {
                fly_ir::Provider::Yandex => "ru-central1-a".into(),
                fly_ir::Provider::Aws => "eu-west-1".into(),
            },
            folder_id: None,
            subnet_id: None,
            preemptible: false,
            provisioning: fly_ir::Provisioning::Sdk,
            image_id: None,
            security_group_id: None,
        },
        resources: fly_ir::Resources {
            cpu: 2,
            memory_mb: 2048,
            disk_gb: 20,
        },
        runner: fly_ir::RunnerSettings {
            tags: vec!["docker".into(), "linux".into()],
            concurrent: 1,
            idle_timeout_s: 600,
            timeout_s: 3600,
            image: "alpine:3".into(),
            privileged: false,
            run_untagged: false,
            max_runners: 10,
        },
        gitlab: fly_ir::GitLab {
            url: "https://gitlab.com".into(),
            project_id: 12345,
            token_secret: "vault://gitlab/runner-token".into(),
        },
        environment: BTreeMap::new(),
        rift: None,
        config_hash: "0".repeat(64),
    }
}

/// A runner spec for `egg`.
pub fn spec(runner_id: &str, egg: fly_ir::Egg) -> RunnerSpec {
    RunnerSpec {
        runner_id: runner_id.into(),
        egg,
        bootstrap: Bootstrap {
            mothergoose_url: "https://mothergoose.example.com".into(),
            credential: SecretString::new(CREDENTIAL),
            ca_pem: None,
        },
        ephemeral: false,
        extra_env: BTreeMap::new(),
    }
}

/// The binary the cloud-init downloads.
pub fn binary() -> GoslingBinary {
    GoslingBinary {
        url: "https://downloads.example.com/gosling/0.1.0/gosling-linux-amd64".into(),
        sha256: "5f".repeat(32),
    }
}

/// Yandex settings pointing at a fake API at `base`, with the fake's key written to `dir`.
pub fn yandex_settings(base: &str, dir: &std::path::Path) -> gosling_providers::ProviderSettings {
    let key = dir.join("yc-key.json");
    std::fs::write(&key, gosling_standins::yandex::FakeYandex::key_json()).unwrap();
    let toml = format!(
        r#"
[gosling_binary]
url = "https://downloads.example.com/gosling/0.1.0/gosling-linux-amd64"
sha256 = "{sha}"

[yandex]
folder_id = "b1gfolder0000000000"
zone = "ru-central1-a"
subnet_id = "e9bsubnet0000000000"
image_id = "fd8image00000000000"
service_account_id = "ajerunnersa000000000"
key_file = "{key}"
runner_image = "cr.yandex/crp0000000000/gosling-runner:1"
poll_initial_ms = 5
poll_max_ms = 20
operation_timeout_s = 10

[yandex.endpoints]
iam = "{base}"
compute = "{base}"
serverless_containers = "{base}"
operation = "{base}"
metadata = "{base}"
"#,
        sha = "5f".repeat(32),
        key = key.display(),
    );
    gosling_providers::ProviderSettings::from_toml(&toml, std::path::Path::new("test.toml"))
        .unwrap()
}

/// AWS settings for a moto at `endpoint`, with a VPC (DNS host names on, as ECS on moto
/// needs), a subnet, a security group, an AMI moto knows and an ECS cluster made there.
pub async fn moto_settings(endpoint: &str) -> gosling_providers::ProviderSettings {
    use aws_sdk_ec2::types::AttributeBooleanValue;
    let creds = gosling_standins::Moto::credentials();
    let conf = gosling_state::aws_config(Some(endpoint), Some("eu-west-1"), Some(&creds)).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    ec2.modify_vpc_attribute()
        .vpc_id(&vpc_id)
        .enable_dns_hostnames(AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .unwrap();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block("10.0.0.0/17")
        .availability_zone("eu-west-1a")
        .send()
        .await
        .unwrap();
    let subnet_id = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
    let sg = ec2
        .create_security_group()
        .group_name(format!("gosling-runners-{}", subnet_id))
        .description("gosling runners")
        .vpc_id(&vpc_id)
        .send()
        .await
        .unwrap();
    let sg_id = sg.group_id().unwrap().to_string();
    let images = ec2.describe_images().owners("amazon").send().await.unwrap();
    let ami = images.images()[0].image_id().unwrap().to_string();
    let ecs = aws_sdk_ecs::Client::new(&conf);
    ecs.create_cluster()
        .cluster_name("gosling")
        .send()
        .await
        .unwrap();
    let toml = format!(
        r#"
[gosling_binary]
url = "https://downloads.example.com/gosling/0.1.0/gosling-linux-amd64"
sha256 = "{sha}"

[aws]
region = "eu-west-1"
endpoint = "{endpoint}"
subnets = ["{subnet_id}"]
security_groups = ["{sg_id}"]
ami = "{ami}"
ecs_cluster = "gosling"
runner_image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gosling-runner:1"
"#,
        sha = "5f".repeat(32),
    );
    let mut s =
        gosling_providers::ProviderSettings::from_toml(&toml, std::path::Path::new("test.toml"))
            .unwrap();
    s.aws.as_mut().unwrap().credentials = Some(creds);
    s
}

/// An HTTP proxy in front of moto that answers the first `refuse` spot RunInstances
/// requests the way EC2 does when it has no capacity (HTTP 500, `InsufficientInstanceCapacity`
/// in EC2's XML error shape) and forwards everything else.
///
/// It also mends one moto quirk the Rust SDK does not forgive: moto answers ECS tasks
/// with `containers[].cpu` / `.memory` as JSON numbers, where the ECS API (and so the
/// SDK's parser) has strings; boto3 does not mind, the Rust SDK fails with "type mismatch:
/// expected string". The proxy turns those two numbers into strings, nothing else.
pub struct MotoProxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Spot RunInstances refused so far.
    pub refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// RunInstances forwarded (spot or on-demand) and whether each was spot.
    pub forwarded: std::sync::Arc<std::sync::Mutex<Vec<bool>>>,
    /// Every request received.
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl MotoProxy {
    /// Starts the proxy (on the current runtime) in front of `upstream` (`127.0.0.1:PORT`).
    pub async fn start(upstream_port: u16, refuse: usize) -> MotoProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let forwarded = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (r, f, q) = (refused.clone(), forwarded.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let (r, f, q) = (r.clone(), f.clone(), q.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, upstream_port, refuse, &r, &f, &q).await;
                });
            }
        });
        async fn serve(
            mut conn: tokio::net::TcpStream,
            upstream_port: u16,
            refuse: usize,
            refused: &std::sync::atomic::AtomicUsize,
            forwarded: &std::sync::Mutex<Vec<bool>>,
            requests: &std::sync::atomic::AtomicUsize,
        ) -> std::io::Result<()> {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                // One request: head, then Content-Length bytes of body.
                let mut buf = Vec::new();
                let head_end = loop {
                    let mut chunk = [0u8; 4096];
                    let n = conn.read(&mut chunk).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let mut chunk = vec![0u8; head_end + len - buf.len()];
                    let n = conn.read(&mut chunk).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
                requests.fetch_add(1, Ordering::SeqCst);
                let run = body.contains("Action=RunInstances");
                let spot = body.contains("InstanceMarketOptions.MarketType=spot");
                if run && spot && refused.load(Ordering::SeqCst) < refuse {
                    refused.fetch_add(1, Ordering::SeqCst);
                    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>We currently do not have sufficient capacity in the Availability Zone you requested (eu-west-1a). Our system will be working on provisioning additional capacity. You can currently get capacity by not specifying an Availability Zone in your request or choosing a different Availability Zone.</Message></Error></Errors><RequestID>5b0d1c4e-0000-4000-8000-000000000001</RequestID></Response>";
                    let resp = format!(
                        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{xml}",
                        xml.len()
                    );
                    conn.write_all(resp.as_bytes()).await?;
                    continue;
                }
                if run {
                    forwarded.lock().unwrap().push(spot);
                }
                // Forward with Connection: close and relay the whole answer.
                let mut up = tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await?;
                let mut new_head = String::new();
                for line in head.trim_end().lines() {
                    if !line.to_ascii_lowercase().starts_with("connection:") {
                        new_head.push_str(line);
                        new_head.push_str("\r\n");
                    }
                }
                new_head.push_str("Connection: close\r\n\r\n");
                up.write_all(new_head.as_bytes()).await?;
                up.write_all(&buf[head_end..head_end + len]).await?;
                let mut answer = Vec::new();
                up.read_to_end(&mut answer).await?;
                let ecs = head
                    .to_ascii_lowercase()
                    .contains("x-amz-target: amazonec2containerservice");
                if ecs {
                    answer = mend_ecs(answer);
                }
                conn.write_all(&answer).await?;
                // moto closed its side; close ours too (the answer says nothing of
                // keep-alive, so the client opens a new connection).
                return Ok(());
            }
        }
        MotoProxy {
            endpoint,
            refused,
            forwarded,
            requests,
        }
    }
}

/// moto's ECS answer with `containers[].cpu` and `.memory` as strings, as the API has them.
fn mend_ecs(answer: Vec<u8>) -> Vec<u8> {
    let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return answer;
    };
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(&answer[split + 4..]) else {
        return answer;
    };
    fn fix(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Array(cs)) = m.get_mut("containers") {
                    for c in cs {
                        for k in ["cpu", "memory"] {
                            if let Some(n @ serde_json::Value::Number(_)) = c.get_mut(k) {
                                *n = serde_json::Value::String(n.to_string());
                            }
                        }
                    }
                }
                m.values_mut().for_each(fix);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(fix),
            _ => {}
        }
    }
    fix(&mut body);
    let body = serde_json::to_vec(&body).unwrap();
    let mut out = String::new();
    for line in head.lines() {
        if !line.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

/// Keeps moto's ECS tasks RUNNING until stopped (by default moto moves a task one step
/// towards STOPPED on every DescribeTasks).
pub async fn moto_hold_tasks(endpoint: &str) {
    let r = reqwest::Client::new()
        .post(format!("{endpoint}/moto-api/state-manager/set-transition"))
        .json(&serde_json::json!({
            "model_name": "ecs::task",
            "transition": { "progression": "manual", "times": 1_000_000 },
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}
