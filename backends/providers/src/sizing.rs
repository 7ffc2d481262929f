//! How an egg's `resources` (vCPUs, memory in MB, disk in GB) become what each service
//! offers. Every function returns a size the service accepts, or
//! [`SizeError`] when the egg asks for more than the service has — never an out-of-range
//! request (Property 8).

/// An egg asks for more than a service offers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service} offers no size with {cpu} vCPUs and {memory_mb} MB{extra}")]
pub struct SizeError {
    /// The service.
    pub service: &'static str,
    /// vCPUs asked for.
    pub cpu: u32,
    /// Memory asked for, MB.
    pub memory_mb: u64,
    /// More detail (disk, …).
    pub extra: String,
}

/// EC2 instance types, in order of on-demand price (Linux): the first that has at least the
/// egg's vCPUs and memory is used. Burstable `t3` for the smallest runners, then compute-
/// (`c6i`, 2 GiB per vCPU), general- (`m6i`, 4 GiB) and memory-optimised (`r6i`, 8 GiB)
/// sizes up to 96 vCPUs / 768 GiB, which covers every egg the language accepts.
///
/// | type | vCPU | memory (MiB) |
/// | --- | --- | --- |
/// | t3.micro | 2 | 1024 |
/// | t3.small | 2 | 2048 |
/// | c6i.large / m6i.large / r6i.large | 2 | 4096 / 8192 / 16384 |
/// | c6i/m6i/r6i.xlarge | 4 | 8192 / 16384 / 32768 |
/// | c6i/m6i/r6i.2xlarge | 8 | 16384 / 32768 / 65536 |
/// | c6i/m6i/r6i.4xlarge | 16 | 32768 / 65536 / 131072 |
/// | c6i/m6i/r6i.8xlarge | 32 | 65536 / 131072 / 262144 |
/// | c6i/m6i/r6i.12xlarge | 48 | 98304 / 196608 / 393216 |
/// | c6i/m6i/r6i.16xlarge | 64 | 131072 / 262144 / 524288 |
/// | c6i/m6i/r6i.24xlarge | 96 | 196608 / 393216 / 786432 |
pub const EC2_INSTANCE_TYPES: &[(&str, u32, u64)] = &[
    ("t3.micro", 2, 1024),
    ("t3.small", 2, 2048),
    ("c6i.large", 2, 4096),
    ("m6i.large", 2, 8192),
    ("r6i.large", 2, 16384),
    ("c6i.xlarge", 4, 8192),
    ("m6i.xlarge", 4, 16384),
    ("r6i.xlarge", 4, 32768),
    ("c6i.2xlarge", 8, 16384),
    ("m6i.2xlarge", 8, 32768),
    ("r6i.2xlarge", 8, 65536),
    ("c6i.4xlarge", 16, 32768),
    ("m6i.4xlarge", 16, 65536),
    ("r6i.4xlarge", 16, 131072),
    ("c6i.8xlarge", 32, 65536),
    ("m6i.8xlarge", 32, 131072),
    ("r6i.8xlarge", 32, 262144),
    ("c6i.12xlarge", 48, 98304),
    ("m6i.12xlarge", 48, 196608),
    ("r6i.12xlarge", 48, 393216),
    ("c6i.16xlarge", 64, 131072),
    ("m6i.16xlarge", 64, 262144),
    ("r6i.16xlarge", 64, 524288),
    ("c6i.24xlarge", 96, 196608),
    ("m6i.24xlarge", 96, 393216),
    ("r6i.24xlarge", 96, 786432),
];

/// The cheapest EC2 instance type with at least `cpu` vCPUs and `memory_mb` MiB.
pub fn ec2_instance_type(cpu: u32, memory_mb: u64) -> Result<&'static str, SizeError> {
    EC2_INSTANCE_TYPES
        .iter()
        .find(|(_, c, m)| *c >= cpu && *m >= memory_mb)
        .map(|(name, _, _)| *name)
        .ok_or(SizeError {
            service: "EC2",
            cpu,
            memory_mb,
            extra: String::new(),
        })
}

/// EBS gp3 volume sizes, GiB.
pub const EBS_GP3_GIB: (u64, u64) = (1, 16384);

/// Fargate's task sizes: CPU units and the memory (MiB) each allows — `(cpu, min, max,
/// step)`.
///
/// | CPU units (vCPU) | memory (MiB) |
/// | --- | --- |
/// | 1024 (1) | 2048–8192 by 1024 |
/// | 2048 (2) | 4096–16384 by 1024 |
/// | 4096 (4) | 8192–30720 by 1024 |
/// | 8192 (8) | 16384–61440 by 4096 |
/// | 16384 (16) | 32768–122880 by 8192 |
///
/// (256 and 512 units exist too; an egg asks for at least 1 vCPU, so they are never used.)
pub const FARGATE_SIZES: &[(u32, u64, u64, u64)] = &[
    (1024, 2048, 8192, 1024),
    (2048, 4096, 16384, 1024),
    (4096, 8192, 30720, 1024),
    (8192, 16384, 61440, 4096),
    (16384, 32768, 122880, 8192),
];

/// Fargate ephemeral storage: 20 GiB included, up to 200 GiB.
pub const FARGATE_STORAGE_GIB: (u64, u64) = (20, 200);

/// A Fargate task size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FargateSize {
    /// CPU units (1024 = 1 vCPU).
    pub cpu_units: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Ephemeral storage beyond the included 20 GiB, if the egg asks for more.
    pub storage_gib: Option<u64>,
}

/// The smallest Fargate size with at least `cpu` vCPUs, `memory_mb` MiB and `disk_gb`
/// GiB of ephemeral storage.
pub fn fargate_size(cpu: u32, memory_mb: u64, disk_gb: u64) -> Result<FargateSize, SizeError> {
    let err = |extra: String| SizeError {
        service: "ECS Fargate",
        cpu,
        memory_mb,
        extra,
    };
    if disk_gb > FARGATE_STORAGE_GIB.1 {
        return Err(err(format!(
            " and {disk_gb} GB of disk (at most {} GiB)",
            FARGATE_STORAGE_GIB.1
        )));
    }
    let storage_gib = (disk_gb > FARGATE_STORAGE_GIB.0).then_some(disk_gb);
    for &(units, min, max, step) in FARGATE_SIZES {
        if u64::from(units) < u64::from(cpu) * 1024 || memory_mb > max {
            continue;
        }
        let memory_mib = if memory_mb <= min {
            min
        } else {
            min + (memory_mb - min).div_ceil(step) * step
        };
        return Ok(FargateSize {
            cpu_units: units,
            memory_mib,
            storage_gib,
        });
    }
    Err(err(String::new()))
}

/// The Yandex Compute platform runners use (Intel Ice Lake).
pub const YANDEX_PLATFORM: &str = "standard-v3";

/// `standard-v3` at 100% vCPU performance: the vCPU counts offered and, for each, the most
/// GB of memory per vCPU (memory is a whole number of GB per vCPU, at least 1). At most
/// 640 GB in all.
///
/// | vCPUs | GB per vCPU |
/// | --- | --- |
/// | 2, 4, 6, 8, 10, 12, 14, 16, 20 | 1–16 |
/// | 24 | 1–13 |
/// | 28 | 1–11 |
/// | 32 | 1–10 |
/// | 36, 40 | 1–16 |
/// | 44 | 1–14 |
/// | 48 | 1–13 |
/// | 52 | 1–12 |
/// | 56 | 1–11 |
/// | 60, 64 | 1–10 |
/// | 68 | 1–9 |
/// | 72, 76, 80 | 1–8 |
/// | 84, 88 | 1–7 |
/// | 92, 96 | 1–6 |
pub const YANDEX_V3_CORES: &[(u32, u64)] = &[
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

/// One GiB.
pub const GIB: u64 = 1 << 30;

/// A Yandex Compute size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YandexVmSize {
    /// vCPUs.
    pub cores: u32,
    /// Memory, bytes (a whole number of GiB per vCPU).
    pub memory_bytes: u64,
    /// Boot disk, bytes.
    pub disk_bytes: u64,
}

/// The largest boot disk, GiB (4 TiB, the API's `diskSpec.size` limit).
pub const YANDEX_DISK_MAX_GIB: u64 = 4096;

/// The smallest `standard-v3` configuration with at least `cpu` vCPUs and `memory_mb` MiB;
/// the boot disk is `disk_gb` GiB but at least `min_disk_gb` (the image needs room).
pub fn yandex_vm_size(
    cpu: u32,
    memory_mb: u64,
    disk_gb: u64,
    min_disk_gb: u64,
) -> Result<YandexVmSize, SizeError> {
    let disk_gib = disk_gb.max(min_disk_gb);
    let err = |extra: String| SizeError {
        service: "Yandex Compute (standard-v3)",
        cpu,
        memory_mb,
        extra,
    };
    if disk_gib > YANDEX_DISK_MAX_GIB {
        return Err(err(format!(
            " and a {disk_gib} GB disk (at most {YANDEX_DISK_MAX_GIB} GiB)"
        )));
    }
    let mut best: Option<(u64, YandexVmSize)> = None;
    for &(cores, max_per_core) in YANDEX_V3_CORES {
        if cores < cpu {
            continue;
        }
        let per_core = memory_mb.div_ceil(u64::from(cores) * 1024).max(1);
        if per_core > max_per_core {
            continue;
        }
        let memory_gib = per_core * u64::from(cores);
        if memory_gib > 640 {
            continue;
        }
        // Cheapest first: fewer vCPUs, then less memory.
        let key = u64::from(cores) * 1_000_000 + memory_gib;
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((
                key,
                YandexVmSize {
                    cores,
                    memory_bytes: memory_gib * GIB,
                    disk_bytes: disk_gib * GIB,
                },
            ));
        }
    }
    best.map(|(_, s)| s).ok_or_else(|| err(String::new()))
}

/// Serverless Containers' limits: memory 128 MiB–8 GiB in steps of 128 MiB, 1–4 cores
/// (core fraction 100% above one core).
pub const YANDEX_CONTAINER_MEMORY: (u64, u64, u64) = (128 << 20, 8 << 30, 128 << 20);

/// The most cores a serverless container has.
pub const YANDEX_CONTAINER_MAX_CORES: u32 = 4;

/// A Serverless Containers revision size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YandexContainerSize {
    /// Cores.
    pub cores: u32,
    /// Memory, bytes (a multiple of 128 MiB).
    pub memory_bytes: u64,
}

/// The Serverless Containers size for `cpu` cores and `memory_mb` MiB.
pub fn yandex_container_size(cpu: u32, memory_mb: u64) -> Result<YandexContainerSize, SizeError> {
    let (min, max, step) = YANDEX_CONTAINER_MEMORY;
    let bytes = memory_mb.saturating_mul(1 << 20).max(min);
    let memory_bytes = bytes.div_ceil(step).saturating_mul(step);
    if cpu > YANDEX_CONTAINER_MAX_CORES || memory_bytes > max {
        return Err(SizeError {
            service: "Yandex Serverless Containers",
            cpu,
            memory_mb,
            extra: String::new(),
        });
    }
    Ok(YandexContainerSize {
        cores: cpu.max(1),
        memory_bytes,
    })
}

/// Serverless Containers' longest execution timeout (one hour). A revision whose timeout
/// is over ten minutes is a *long-lived container*.
pub const YANDEX_CONTAINER_TIMEOUT_MAX_S: u64 = 3600;

/// Beyond ten minutes a container is long-lived.
pub const YANDEX_LONG_LIVED_FROM_S: u64 = 600;

/// Time a serverless runner needs besides its job (start, registration, clean-up).
pub const SERVERLESS_SETUP_S: u64 = 300;

/// The execution timeout of a serverless runner whose jobs run at most `job_timeout_s`:
/// the job plus [`SERVERLESS_SETUP_S`], at most an hour.
pub fn yandex_execution_timeout_s(job_timeout_s: u64) -> u64 {
    job_timeout_s
        .saturating_add(SERVERLESS_SETUP_S)
        .clamp(1, YANDEX_CONTAINER_TIMEOUT_MAX_S)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec2_types_cover_the_language_and_pick_the_cheapest() {
        assert_eq!(ec2_instance_type(1, 512).unwrap(), "t3.micro");
        assert_eq!(ec2_instance_type(2, 4096).unwrap(), "c6i.large");
        assert_eq!(ec2_instance_type(2, 16384).unwrap(), "r6i.large");
        assert_eq!(ec2_instance_type(3, 4096).unwrap(), "c6i.xlarge");
        assert_eq!(ec2_instance_type(96, 786_432).unwrap(), "r6i.24xlarge");
        assert_eq!(ec2_instance_type(1, 786_432).unwrap(), "r6i.24xlarge");
    }

    #[test]
    fn fargate_sizes_are_valid_pairs() {
        let s = fargate_size(1, 128, 20).unwrap();
        assert_eq!(
            (s.cpu_units, s.memory_mib, s.storage_gib),
            (1024, 2048, None)
        );
        let s = fargate_size(1, 9000, 30).unwrap();
        assert_eq!(
            (s.cpu_units, s.memory_mib, s.storage_gib),
            (2048, 9216, Some(30))
        );
        let s = fargate_size(3, 4096, 1).unwrap();
        assert_eq!((s.cpu_units, s.memory_mib), (4096, 8192));
        let s = fargate_size(8, 17000, 1).unwrap();
        assert_eq!((s.cpu_units, s.memory_mib), (8192, 20480));
        let s = fargate_size(16, 122_880, 200).unwrap();
        assert_eq!((s.cpu_units, s.memory_mib), (16384, 122_880));
        assert!(fargate_size(1, 2048, 201).is_err());
    }

    #[test]
    fn yandex_sizes_follow_the_platform_table() {
        let s = yandex_vm_size(1, 2048, 5, 10).unwrap();
        assert_eq!(
            (s.cores, s.memory_bytes, s.disk_bytes),
            (2, 2 * GIB, 10 * GIB)
        );
        let s = yandex_vm_size(3, 5000, 20, 10).unwrap();
        assert_eq!((s.cores, s.memory_bytes), (4, 8 * GIB));
        let s = yandex_vm_size(2, 600 * 1024, 20, 10).unwrap();
        assert_eq!((s.cores, s.memory_bytes), (40, 600 * GIB));
        let s = yandex_vm_size(96, 2048, 20, 10).unwrap();
        assert_eq!((s.cores, s.memory_bytes), (96, 96 * GIB));
        assert!(yandex_vm_size(2, 700 * 1024, 20, 10).is_err());
        assert!(yandex_vm_size(2, 2048, 5000, 10).is_err());
        let c = yandex_container_size(1, 200).unwrap();
        assert_eq!(c.memory_bytes, 256 << 20);
        assert!(yandex_container_size(5, 200).is_err());
        assert_eq!(yandex_execution_timeout_s(3600), 3600);
        assert_eq!(yandex_execution_timeout_s(60), 360);
    }
}
