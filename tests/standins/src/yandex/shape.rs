//! The documented request shapes (Yandex Cloud API reference, cloudapi protos): field
//! names, JSON types (int64 as strings), required fields, ranges and patterns. Each check
//! returns why a request does not match.

use serde_json::{Map, Value};

type Check = Result<(), String>;

fn obj<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{at} must be an object"))
}

fn only(m: &Map<String, Value>, at: &str, allowed: &[&str]) -> Check {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "unknown field {at}.{k} (allowed: {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

fn string<'a>(
    m: &'a Map<String, Value>,
    at: &str,
    key: &str,
    required: bool,
) -> Result<Option<&'a str>, String> {
    match m.get(key) {
        None if required => Err(format!("{at}.{key} is required")),
        None => Ok(None),
        Some(Value::String(s)) => {
            if required && s.is_empty() {
                Err(format!("{at}.{key} is required"))
            } else {
                Ok(Some(s))
            }
        }
        Some(_) => Err(format!("{at}.{key} must be a string")),
    }
}

/// An int64 field: a JSON string of digits, as the REST API documents it.
fn int64(
    m: &Map<String, Value>,
    at: &str,
    key: &str,
    required: bool,
) -> Result<Option<i64>, String> {
    match m.get(key) {
        None if required => Err(format!("{at}.{key} is required")),
        None => Ok(None),
        Some(Value::String(s)) => s.parse::<i64>().map(Some).map_err(|_| {
            format!("{at}.{key} must be an int64 written as a string of digits, not {s:?}")
        }),
        Some(Value::Number(n)) => Err(format!(
            "{at}.{key} is an int64: send it as a string, not the number {n}"
        )),
        Some(_) => Err(format!("{at}.{key} must be an int64 string")),
    }
}

fn boolean(m: &Map<String, Value>, at: &str, key: &str) -> Check {
    match m.get(key) {
        None | Some(Value::Bool(_)) => Ok(()),
        Some(_) => Err(format!("{at}.{key} must be a boolean")),
    }
}

fn max_len(s: Option<&str>, at: &str, max: usize) -> Check {
    match s {
        Some(s) if s.chars().count() > max => Err(format!("{at} is longer than {max}")),
        _ => Ok(()),
    }
}

/// `[a-z]([-_a-z0-9]{0,61}[a-z0-9])?` (or `[a-z][-a-z0-9]{1,61}[a-z0-9]`), or empty.
fn name_ok(s: &str, underscores: bool, min: usize) -> bool {
    if s.is_empty() {
        return true;
    }
    let b = s.as_bytes();
    s.len() >= min
        && s.len() <= 63
        && b[0].is_ascii_lowercase()
        && (b.len() == 1 || b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter().all(|c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || *c == b'-'
                || (underscores && *c == b'_')
        })
}

fn label_chars(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_./\\@".contains(&c))
}

fn labels(m: &Map<String, Value>, at: &str) -> Check {
    let Some(v) = m.get("labels") else {
        return Ok(());
    };
    let l = obj(v, &format!("{at}.labels"))?;
    if l.len() > 64 {
        return Err(format!("{at}.labels has more than 64 entries"));
    }
    for (k, v) in l {
        let ok_key = !k.is_empty()
            && k.len() <= 63
            && k.as_bytes()[0].is_ascii_lowercase()
            && label_chars(k);
        if !ok_key {
            return Err(format!(
                "{at}.labels key {k:?} does not match [a-z][-_./\\@0-9a-z]{{0,62}}"
            ));
        }
        let Some(v) = v.as_str() else {
            return Err(format!("{at}.labels.{k} must be a string"));
        };
        if v.len() > 63 || !label_chars(v) {
            return Err(format!(
                "{at}.labels.{k} value {v:?} does not match [-_./\\@0-9a-z]{{0,63}}"
            ));
        }
    }
    Ok(())
}

/// Intel Ice Lake (`standard-v3`) at 100%: vCPU counts and the most GB per vCPU.
const V3: &[(i64, i64)] = &[
    (2, 16),
    (4, 16),
    (6, 16),
    (8, 16),
    (10, 16),
    (12, 16),
    (14, 16),
    (16, 16),
    (20, 16),
    (24, 13),
    (28, 11),
    (32, 10),
    (36, 16),
    (40, 16),
    (44, 14),
    (48, 13),
    (52, 12),
    (56, 11),
    (60, 10),
    (64, 10),
    (68, 9),
    (72, 8),
    (76, 8),
    (80, 8),
    (84, 7),
    (88, 7),
    (92, 6),
    (96, 6),
];

const GIB: i64 = 1 << 30;

fn resources_spec(v: &Value, platform: &str) -> Check {
    let at = "resourcesSpec";
    let m = obj(v, at)?;
    only(m, at, &["memory", "cores", "coreFraction", "gpus"])?;
    let memory = int64(m, at, "memory", true)?.unwrap_or(0);
    let cores = int64(m, at, "cores", true)?.unwrap_or(0);
    let fraction = int64(m, at, "coreFraction", false)?.unwrap_or(100);
    if let Some(g) = int64(m, at, "gpus", false)? {
        if ![0, 1, 2, 4].contains(&g) {
            return Err(format!("{at}.gpus must be 0, 1, 2 or 4"));
        }
    }
    if ![0, 5, 20, 50, 100].contains(&fraction) {
        return Err(format!(
            "{at}.coreFraction must be one of 0, 5, 20, 50, 100"
        ));
    }
    if platform != "standard-v3" {
        return Ok(());
    }
    // vCPU performance levels, standard-v3.
    if fraction == 100 {
        let Some((_, per_core)) = V3.iter().find(|(c, _)| *c == cores) else {
            return Err(format!("{cores} vCPUs is not a standard-v3 configuration"));
        };
        if memory % GIB != 0 || memory / GIB % cores != 0 {
            return Err(format!(
                "{at}.memory must be a whole number of GB per vCPU on standard-v3 at 100%"
            ));
        }
        let g = memory / GIB / cores;
        if g < 1 || g > *per_core || memory / GIB > 640 {
            return Err(format!(
                "{g} GB per vCPU is out of range for {cores} vCPUs on standard-v3"
            ));
        }
    } else {
        if fraction < 20 || !(cores == 2 || cores == 4) {
            return Err(format!("standard-v3 at {fraction}% has 2 or 4 vCPUs"));
        }
        let half_gb = GIB / 2;
        if memory % half_gb != 0 || memory < cores * half_gb || memory > cores * 4 * GIB {
            return Err(format!(
                "{at}.memory out of range for standard-v3 at {fraction}%"
            ));
        }
    }
    Ok(())
}

/// `POST /compute/v1/instances`.
pub fn create_instance(body: &Value) -> Check {
    let at = "CreateInstanceRequest";
    let m = obj(body, at)?;
    only(
        m,
        at,
        &[
            "folderId",
            "name",
            "description",
            "labels",
            "zoneId",
            "platformId",
            "resourcesSpec",
            "metadata",
            "bootDiskSpec",
            "secondaryDiskSpecs",
            "filesystemSpecs",
            "localDiskSpecs",
            "networkInterfaceSpecs",
            "hostname",
            "schedulingPolicy",
            "serviceAccountId",
            "networkSettings",
            "placementPolicy",
            "gpuSettings",
            "maintenancePolicy",
            "maintenanceGracePeriod",
            "metadataOptions",
            "serialPortSettings",
            "application",
            "reservedInstancePoolId",
        ],
    )?;
    max_len(string(m, at, "folderId", true)?, "folderId", 50)?;
    let name = string(m, at, "name", false)?.unwrap_or("");
    if !name_ok(name, true, 1) {
        return Err(format!(
            "name {name:?} does not match |[a-z]([-_a-z0-9]{{0,61}}[a-z0-9])?"
        ));
    }
    max_len(string(m, at, "description", false)?, "description", 256)?;
    labels(m, at)?;
    max_len(string(m, at, "zoneId", true)?, "zoneId", 50)?;
    let platform = string(m, at, "platformId", true)?.unwrap_or("");
    resources_spec(
        m.get("resourcesSpec").ok_or("resourcesSpec is required")?,
        platform,
    )?;
    if let Some(md) = m.get("metadata") {
        let md = obj(md, "metadata")?;
        let mut total = 0;
        for (k, v) in md {
            let v = v
                .as_str()
                .ok_or_else(|| format!("metadata.{k} must be a string"))?;
            if v.len() > 256 * 1024 {
                return Err(format!("metadata.{k} is larger than 256 KB"));
            }
            total += k.len() + v.len();
        }
        if total >= 512 * 1024 {
            return Err("metadata is 512 KB or more in all".into());
        }
    }
    let boot = obj(
        m.get("bootDiskSpec").ok_or("bootDiskSpec is required")?,
        "bootDiskSpec",
    )?;
    only(
        boot,
        "bootDiskSpec",
        &["mode", "deviceName", "autoDelete", "diskSpec", "diskId"],
    )?;
    boolean(boot, "bootDiskSpec", "autoDelete")?;
    match (boot.get("diskSpec"), boot.get("diskId")) {
        (Some(ds), None) => {
            let at = "bootDiskSpec.diskSpec";
            let ds = obj(ds, at)?;
            only(
                ds,
                at,
                &[
                    "name",
                    "description",
                    "typeId",
                    "size",
                    "blockSize",
                    "diskPlacementPolicy",
                    "imageId",
                    "snapshotId",
                    "kmsKeyId",
                ],
            )?;
            let size = int64(ds, at, "size", true)?.unwrap_or(0);
            if !(4_194_304..=4_398_046_511_104).contains(&size) {
                return Err(format!(
                    "{at}.size {size} is outside 4194304..4398046511104 bytes"
                ));
            }
            let image = string(ds, at, "imageId", false)?;
            let snapshot = string(ds, at, "snapshotId", false)?;
            if image.is_some() == snapshot.is_some() {
                return Err(format!("{at}: exactly one of imageId, snapshotId"));
            }
            max_len(image, "imageId", 50)?;
            max_len(string(ds, at, "typeId", false)?, "typeId", 50)?;
        }
        (None, Some(id)) => {
            id.as_str().ok_or("bootDiskSpec.diskId must be a string")?;
        }
        _ => return Err("bootDiskSpec: exactly one of diskSpec, diskId".into()),
    }
    let nics = m
        .get("networkInterfaceSpecs")
        .and_then(Value::as_array)
        .ok_or("networkInterfaceSpecs is required (an array)")?;
    if nics.is_empty() {
        return Err("networkInterfaceSpecs needs one interface".into());
    }
    for (i, nic) in nics.iter().enumerate() {
        let at = format!("networkInterfaceSpecs[{i}]");
        let n = obj(nic, &at)?;
        only(
            n,
            &at,
            &[
                "index",
                "subnetId",
                "primaryV4AddressSpec",
                "primaryV6AddressSpec",
                "securityGroupIds",
            ],
        )?;
        string(n, &at, "subnetId", true)?;
        if let Some(a) = n.get("primaryV4AddressSpec") {
            let a = obj(a, &format!("{at}.primaryV4AddressSpec"))?;
            only(
                a,
                "primaryV4AddressSpec",
                &["address", "oneToOneNatSpec", "dnsRecordSpecs"],
            )?;
            if let Some(nat) = a.get("oneToOneNatSpec") {
                let nat = obj(nat, "oneToOneNatSpec")?;
                only(
                    nat,
                    "oneToOneNatSpec",
                    &["ipVersion", "address", "dnsRecordSpecs"],
                )?;
                if let Some(v) = string(nat, "oneToOneNatSpec", "ipVersion", false)? {
                    if !["IPV4", "IPV6"].contains(&v) {
                        return Err(format!(
                            "oneToOneNatSpec.ipVersion {v:?} is not IPV4 or IPV6"
                        ));
                    }
                }
            }
        }
        if let Some(sg) = n.get("securityGroupIds") {
            if !sg
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string))
            {
                return Err(format!("{at}.securityGroupIds must be an array of strings"));
            }
        }
    }
    if let Some(sp) = m.get("schedulingPolicy") {
        let sp = obj(sp, "schedulingPolicy")?;
        only(sp, "schedulingPolicy", &["preemptible"])?;
        boolean(sp, "schedulingPolicy", "preemptible")?;
    }
    string(m, at, "serviceAccountId", false)?;
    Ok(())
}

/// `POST /containers/v1/containers`.
pub fn create_container(body: &Value) -> Check {
    let at = "CreateContainerRequest";
    let m = obj(body, at)?;
    only(m, at, &["folderId", "name", "description", "labels"])?;
    string(m, at, "folderId", true)?;
    let name = string(m, at, "name", false)?.unwrap_or("");
    if !name_ok(name, false, 3) {
        return Err(format!(
            "name {name:?} does not match |[a-z][-a-z0-9]{{1,61}}[a-z0-9]"
        ));
    }
    max_len(string(m, at, "description", false)?, "description", 256)?;
    labels(m, at)
}

/// `PATCH /containers/v1/containers/{id}`.
pub fn update_container(body: &Value) -> Check {
    let at = "UpdateContainerRequest";
    let m = obj(body, at)?;
    only(m, at, &["updateMask", "name", "description", "labels"])?;
    string(m, at, "updateMask", false)?;
    labels(m, at)
}

/// A protobuf Duration in JSON (`"3600s"`, `"1.5s"`), in seconds.
pub fn duration_s(v: &Value) -> Option<f64> {
    let s = v.as_str()?.strip_suffix('s')?;
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return None;
    }
    s.parse().ok()
}

/// `POST /containers/v1/revisions:deploy`.
pub fn deploy_revision(body: &Value) -> Check {
    let at = "DeployContainerRevisionRequest";
    let m = obj(body, at)?;
    only(
        m,
        at,
        &[
            "containerId",
            "description",
            "resources",
            "executionTimeout",
            "serviceAccountId",
            "imageSpec",
            "concurrency",
            "secrets",
            "connectivity",
            "provisionPolicy",
            "scalingPolicy",
            "logOptions",
            "storageMounts",
            "mounts",
            "runtime",
            "metadataOptions",
            "asyncInvocationConfig",
        ],
    )?;
    string(m, at, "containerId", true)?;
    let r = obj(
        m.get("resources").ok_or("resources is required")?,
        "resources",
    )?;
    only(r, "resources", &["memory", "cores", "coreFraction"])?;
    let memory = int64(r, "resources", "memory", true)?.unwrap_or(0);
    if !(134_217_728..=8_589_934_592).contains(&memory) || memory % 134_217_728 != 0 {
        return Err(format!(
            "resources.memory {memory} must be 134217728..8589934592 bytes, a multiple of 128 MB"
        ));
    }
    let cores = int64(r, "resources", "cores", false)?.unwrap_or(0);
    if !(0..=4).contains(&cores) {
        return Err(format!("resources.cores {cores} is outside 0..4"));
    }
    let fraction = int64(r, "resources", "coreFraction", false)?.unwrap_or(0);
    if !(0..=100).contains(&fraction) || fraction % 5 != 0 || (cores > 1 && fraction != 100) {
        return Err(format!(
            "resources.coreFraction {fraction}: 0..100, a multiple of 5, 100 above one core"
        ));
    }
    if let Some(t) = m.get("executionTimeout") {
        match duration_s(t) {
            Some(s) if (0.0..=3600.0).contains(&s) => {}
            Some(s) => return Err(format!("executionTimeout {s}s is outside 0s..3600s")),
            None => {
                return Err(format!(
                    "executionTimeout must be a duration string like \"600s\", not {t}"
                ))
            }
        }
    }
    string(m, at, "serviceAccountId", false)?;
    let img = obj(
        m.get("imageSpec").ok_or("imageSpec is required")?,
        "imageSpec",
    )?;
    only(
        img,
        "imageSpec",
        &["imageUrl", "command", "args", "environment", "workingDir"],
    )?;
    string(img, "imageSpec", "imageUrl", true)?;
    for (field, inner) in [("command", "command"), ("args", "args")] {
        if let Some(c) = img.get(field) {
            let c = obj(c, field)?;
            only(c, field, &[inner])?;
            if !c
                .get(inner)
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().all(Value::is_string))
            {
                return Err(format!(
                    "imageSpec.{field}.{inner} must be an array of strings"
                ));
            }
        }
    }
    if let Some(env) = img.get("environment") {
        let env = obj(env, "imageSpec.environment")?;
        let mut total = 0;
        for (k, v) in env {
            let ok_key = k.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
                && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
            if !ok_key {
                return Err(format!(
                    "environment name {k:?} does not match [a-zA-Z][a-zA-Z0-9_]*"
                ));
            }
            let v = v
                .as_str()
                .ok_or_else(|| format!("environment.{k} must be a string"))?;
            if v.chars().count() > 4096 {
                return Err(format!("environment.{k} is longer than 4096"));
            }
            total += k.len() + v.len();
        }
        if total > 4096 {
            return Err("the environment is larger than 4 KB".into());
        }
    }
    int64(m, at, "concurrency", false)?;
    if let Some(sp) = m.get("scalingPolicy") {
        let sp = obj(sp, "scalingPolicy")?;
        only(
            sp,
            "scalingPolicy",
            &["zoneInstancesLimit", "zoneRequestsLimit"],
        )?;
        int64(sp, "scalingPolicy", "zoneInstancesLimit", false)?;
        int64(sp, "scalingPolicy", "zoneRequestsLimit", false)?;
    }
    if let Some(pp) = m.get("provisionPolicy") {
        let pp = obj(pp, "provisionPolicy")?;
        only(pp, "provisionPolicy", &["minInstances"])?;
        int64(pp, "provisionPolicy", "minInstances", false)?;
    }
    if let Some(c) = m.get("connectivity") {
        let c = obj(c, "connectivity")?;
        only(c, "connectivity", &["networkId", "subnetIds"])?;
        string(c, "connectivity", "networkId", false)?;
    }
    if let Some(rt) = m.get("runtime") {
        let rt = obj(rt, "runtime")?;
        only(rt, "runtime", &["http", "task"])?;
        if rt.len() != 1 {
            return Err("runtime: exactly one of http, task".into());
        }
        if !rt.values().all(Value::is_object) {
            return Err("runtime.http / runtime.task must be an object".into());
        }
    }
    if let Some(a) = m.get("asyncInvocationConfig") {
        let a = obj(a, "asyncInvocationConfig")?;
        only(a, "asyncInvocationConfig", &["serviceAccountId"])?;
        string(a, "asyncInvocationConfig", "serviceAccountId", false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn instance() -> Value {
        json!({
            "folderId": "b1g",
            "name": "r-0123",
            "labels": { "egg": "builds" },
            "zoneId": "ru-central1-a",
            "platformId": "standard-v3",
            "resourcesSpec": { "memory": "4294967296", "cores": "2", "coreFraction": "100" },
            "metadata": { "user-data": "#cloud-config\n" },
            "bootDiskSpec": { "autoDelete": true, "diskSpec": { "size": "21474836480", "imageId": "fd8" } },
            "networkInterfaceSpecs": [{ "subnetId": "e9b", "primaryV4AddressSpec": { "oneToOneNatSpec": { "ipVersion": "IPV4" } } }],
            "schedulingPolicy": { "preemptible": true },
        })
    }

    #[test]
    fn the_documented_instance_is_accepted_and_deviations_are_not() {
        assert_eq!(create_instance(&instance()), Ok(()));
        let refused = |f: &dyn Fn(&mut Value)| {
            let mut v = instance();
            f(&mut v);
            create_instance(&v).expect_err("refused")
        };
        assert!(
            refused(&|v| v["resourcesSpec"]["memory"] = json!(4294967296u64))
                .contains("as a string")
        );
        assert!(
            refused(&|v| v["resourcesSpec"]["cores"] = json!("3")).contains("not a standard-v3")
        );
        assert!(
            refused(&|v| v["resourcesSpec"]["memory"] = json!("3000000000"))
                .contains("whole number")
        );
        assert!(refused(&|v| v["name"] = json!("R_1")).contains("does not match"));
        assert!(refused(&|v| v["labels"]["Egg"] = json!("x")).contains("labels key"));
        assert!(
            refused(&|v| v["schedulingPolicy"]["preemptible"] = json!("yes")).contains("boolean")
        );
        assert!(
            refused(&|v| v["bootDiskSpec"]["diskSpec"]["size"] = json!("1024")).contains("outside")
        );
        assert!(refused(&|v| v["zone"] = json!("ru-central1-a")).contains("unknown field"));
        assert!(refused(&|v| {
            v.as_object_mut().unwrap().remove("networkInterfaceSpecs");
        })
        .contains("required"));
    }

    #[test]
    fn revisions_follow_the_serverless_limits() {
        let ok = json!({
            "containerId": "bba",
            "resources": { "memory": "1073741824", "cores": "1", "coreFraction": "100" },
            "executionTimeout": "3600s",
            "imageSpec": { "imageUrl": "cr.yandex/x", "command": { "command": ["gosling", "runner"] }, "environment": { "RUNNER_ID": "r-1" } },
            "concurrency": "1",
            "runtime": { "task": {} },
        });
        assert_eq!(deploy_revision(&ok), Ok(()));
        let mut v = ok.clone();
        v["executionTimeout"] = json!("3601s");
        assert!(deploy_revision(&v).is_err());
        let mut v = ok.clone();
        v["executionTimeout"] = json!(600);
        assert!(deploy_revision(&v).is_err());
        let mut v = ok.clone();
        v["resources"]["memory"] = json!("1000000000");
        assert!(deploy_revision(&v).is_err());
        let mut v = ok.clone();
        v["resources"]["cores"] = json!("2");
        v["resources"]["coreFraction"] = json!("50");
        assert!(deploy_revision(&v).is_err());
        let mut v = ok.clone();
        v["runtime"] = json!({ "task": {}, "http": {} });
        assert!(deploy_revision(&v).is_err());
        let mut v = ok;
        v["imageSpec"]["environment"]["1BAD"] = json!("x");
        assert!(deploy_revision(&v).is_err());
        assert!(create_container(&json!({ "folderId": "b1g", "name": "r_1" })).is_err());
    }
}
