//! The Fly vocabulary, described once as data.
//!
//! The same tables drive the checker, the language server's hover and completion, the
//! generated reference page `docs/reference.md`, and the examples in error messages.

/// The type of an attribute value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// Any string.
    String,
    /// A whole number within `min..=max`.
    Int {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// `true` or `false`.
    Bool,
    /// One of the listed strings.
    Enum(&'static [&'static str]),
    /// A duration string such as `"90s"`, `"10m"`, `"1h30m"`, at most `max_s` seconds.
    Duration {
        /// Longest allowed duration in seconds.
        max_s: u64,
    },
    /// A five-field cron expression.
    Cron,
    /// A secret reference: `vault://…`, `yc-lockbox://…` or `aws-sm://…`.
    Secret,
    /// A cloud region or zone of the egg's provider.
    Region,
    /// An e-mail address.
    Email,
    /// A list of runner tags.
    Tags,
    /// A list of values of one type.
    List(&'static Type),
    /// An http(s) URL.
    Url,
    /// A policy condition (`failed_count >= 3 AND age > 1h`).
    Condition,
    /// An IANA time zone name (`"Europe/Moscow"`, `"UTC"`).
    TimeZone,
    /// One or more PEM certificates (`-----BEGIN CERTIFICATE-----` … `-----END
    /// CERTIFICATE-----`), usually a heredoc.
    Certificate,
    /// Any value (variables).
    Any,
}

impl Type {
    /// The type as written in docs and messages.
    pub fn describe(&self) -> String {
        match self {
            Type::String => "string".into(),
            Type::Int { min, max } if *max == i64::MAX => format!("integer ≥ {min}"),
            Type::Int { min, max } => format!("integer {min}–{max}"),
            Type::Bool => "bool".into(),
            Type::Enum(values) => {
                let v: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
                format!("one of {}", v.join(", "))
            }
            Type::Duration { .. } => "duration".into(),
            Type::Cron => "cron expression".into(),
            Type::Secret => "secret reference".into(),
            Type::Region => "region".into(),
            Type::Email => "e-mail address".into(),
            Type::Tags => "list of tags".into(),
            Type::List(inner) => format!("list of {}", inner.describe()),
            Type::Url => "URL".into(),
            Type::Condition => "policy condition".into(),
            Type::TimeZone => "time zone".into(),
            Type::Certificate => "PEM certificate".into(),
            Type::Any => "any value".into(),
        }
    }
}

/// A default value, as it would be written in Fly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Default {
    /// A string.
    Str(&'static str),
    /// An integer.
    Int(i64),
    /// A bool.
    Bool(bool),
    /// An empty list.
    EmptyList,
}

impl Default {
    /// The default in Fly syntax.
    pub fn fly(&self) -> String {
        match self {
            Default::Str(s) => format!("\"{s}\""),
            Default::Int(i) => i.to_string(),
            Default::Bool(b) => b.to_string(),
            Default::EmptyList => "[]".into(),
        }
    }
}

/// One attribute of a block.
#[derive(Debug)]
pub struct AttrSchema {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub ty: Type,
    /// Must it be set?
    pub required: bool,
    /// The value when not set.
    pub default: Option<Default>,
    /// One paragraph for people.
    pub doc: &'static str,
    /// A valid `name = value` line.
    pub example: &'static str,
}

/// One block type.
#[derive(Debug)]
pub struct BlockSchema {
    /// Its type name.
    pub name: &'static str,
    /// The names of its labels (`egg "NAME"` has one).
    pub labels: &'static [&'static str],
    /// One paragraph for people.
    pub doc: &'static str,
    /// A valid example of the block.
    pub example: &'static str,
    /// Its attributes.
    pub attrs: &'static [AttrSchema],
    /// The blocks it may contain.
    pub blocks: &'static [&'static BlockSchema],
    /// May appear more than once in its parent.
    pub repeatable: bool,
    /// Must appear in its parent.
    pub required: bool,
    /// Any attribute name is allowed, with values of this type (`environment`, `vars`).
    pub free_attrs: Option<Type>,
}

impl BlockSchema {
    /// The attribute named `name`.
    pub fn attr(&'static self, name: &str) -> Option<&'static AttrSchema> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// The nested block type named `name`.
    pub fn block(&'static self, name: &str) -> Option<&'static BlockSchema> {
        self.blocks.iter().copied().find(|b| b.name == name)
    }
}

const DAY: u64 = 24 * 3600;
const ANY_DURATION: Type = Type::Duration { max_s: 366 * DAY };
const RUNNER_TYPES: &[&str] = &["vm", "serverless"];

/// The top level of a `.fly` file.
pub static ROOT: BlockSchema = BlockSchema {
    name: "",
    labels: &[],
    doc: "A file of the Nest.",
    example: "",
    attrs: &[],
    blocks: &[&EGG, &JOB, &RIFT, &UGLYFOX, &VARS],
    repeatable: false,
    required: false,
    free_attrs: None,
};

/// `vars { NAME = value }`: values for `${vars.NAME}`.
pub static VARS: BlockSchema = BlockSchema {
    name: "vars",
    labels: &[],
    doc: "Variables for interpolation. Each attribute defines `${vars.NAME}` for the whole Nest; \
          `vars` blocks may appear in any file and any number of times, but each name only once.",
    example: "vars {\n  region = \"ru-central1-a\"\n}",
    attrs: &[],
    blocks: &[],
    repeatable: true,
    required: false,
    free_attrs: Some(Type::Any),
};

/// `egg "NAME" { … }`: a runner pool.
pub static EGG: BlockSchema = BlockSchema {
    name: "egg",
    labels: &["name"],
    doc: "A runner pool: where runners run (cloud), how big they are (resources), what jobs \
          they take (runner) and for which GitLab project (gitlab). The name is unique in the Nest.",
    example: "egg \"my-app\" {\n  type = \"vm\"\n  cloud {\n    provider = \"yandex\"\n    region   = \"ru-central1-a\"\n  }\n  gitlab {\n    project_id   = 12345\n    token_secret = \"vault://gitlab/runner-token\"\n  }\n}",
    attrs: &[
        AttrSchema {
            name: "type",
            ty: Type::Enum(RUNNER_TYPES),
            required: true,
            default: None,
            doc: "`vm` for virtual machines (long or heavy jobs), `serverless` for serverless \
                  containers (jobs under 60 minutes, small resources).",
            example: "type = \"vm\"",
        },
        AttrSchema {
            name: "rift",
            ty: Type::String,
            required: false,
            default: None,
            doc: "The name of a `rift` declared in the Nest: the egg's runners use it as their \
                  cache (and, when it has `docker_proxy = true`, as their Docker daemon). \
                  Without it the egg uses no cache: its runners never contact a Rift.",
            example: "rift = \"main\"",
        },
    ],
    blocks: &[&CLOUD, &RESOURCES, &EGG_RUNNER, &GITLAB, &ENVIRONMENT],
    repeatable: true,
    required: false,
    free_attrs: None,
};

/// `cloud { … }` inside an egg.
pub static CLOUD: BlockSchema = BlockSchema {
    name: "cloud",
    labels: &[],
    doc: "Where the egg's runners run.",
    example: "cloud {\n  provider = \"aws\"\n  region   = \"eu-west-1\"\n}",
    attrs: &[
        AttrSchema {
            name: "provider",
            ty: Type::Enum(&["yandex", "aws"]),
            required: true,
            default: None,
            doc: "The cloud: `yandex` (Yandex Cloud) or `aws`.",
            example: "provider = \"yandex\"",
        },
        AttrSchema {
            name: "region",
            ty: Type::Region,
            required: true,
            default: None,
            doc: "Region or availability zone of the provider, e.g. `ru-central1-a` on Yandex \
                  Cloud or `eu-west-1` on AWS. An unknown region is a warning, not an error.",
            example: "region = \"ru-central1-a\"",
        },
        AttrSchema {
            name: "folder_id",
            ty: Type::String,
            required: false,
            default: None,
            doc: "Yandex Cloud folder to create runners in.",
            example: "folder_id = \"b1g0123456789abcdef\"",
        },
        AttrSchema {
            name: "subnet_id",
            ty: Type::String,
            required: false,
            default: None,
            doc: "Subnet for the runners' network interface.",
            example: "subnet_id = \"e9b0123456789abcdef\"",
        },
        AttrSchema {
            name: "preemptible",
            ty: Type::Bool,
            required: false,
            default: Some(Default::Bool(false)),
            doc: "Use preemptible (Yandex) or spot (AWS) capacity: cheaper, may be stopped.",
            example: "preemptible = true",
        },
        AttrSchema {
            name: "provisioning",
            ty: Type::Enum(&["sdk", "tofu"]),
            required: false,
            default: Some(Default::Str("sdk")),
            doc: "How runners are created: `sdk` with the cloud's API directly, `tofu` with \
                  OpenTofu configurations rendered from templates.",
            example: "provisioning = \"tofu\"",
        },
        AttrSchema {
            name: "image_id",
            ty: Type::String,
            required: false,
            default: None,
            doc: "Boot image of the runners: an AMI id on AWS, an image id on Yandex Cloud. \
                  Unset: the provisioner's default image.",
            example: "image_id = \"fd80bm0rh4rkepi5ksdi\"",
        },
        AttrSchema {
            name: "security_group_id",
            ty: Type::String,
            required: false,
            default: None,
            doc: "Security group of the runners' network interface.",
            example: "security_group_id = \"enp0123456789abcdef\"",
        },
    ],
    blocks: &[],
    repeatable: false,
    required: true,
    free_attrs: None,
};

/// `resources { … }` inside an egg.
pub static RESOURCES: BlockSchema = BlockSchema {
    name: "resources",
    labels: &[],
    doc: "The size of each runner. Serverless eggs are limited to 4 vCPUs and 8192 MB.",
    example: "resources {\n  cpu    = 2\n  memory = 4096\n  disk   = 20\n}",
    attrs: &[
        AttrSchema {
            name: "cpu",
            ty: Type::Int { min: 1, max: 96 },
            required: false,
            default: Some(Default::Int(2)),
            doc: "vCPUs per runner.",
            example: "cpu = 2",
        },
        AttrSchema {
            name: "memory",
            ty: Type::Int {
                min: 128,
                max: 786_432,
            },
            required: false,
            default: Some(Default::Int(2048)),
            doc: "Memory per runner in MB.",
            example: "memory = 4096",
        },
        AttrSchema {
            name: "disk",
            ty: Type::Int {
                min: 1,
                max: 16_384,
            },
            required: false,
            default: Some(Default::Int(20)),
            doc: "Boot disk per runner in GB.",
            example: "disk = 20",
        },
    ],
    blocks: &[],
    repeatable: false,
    required: false,
    free_attrs: None,
};

/// `runner { … }` inside an egg.
pub static EGG_RUNNER: BlockSchema = BlockSchema {
    name: "runner",
    labels: &[],
    doc: "How gitlab-runner runs on the egg's runners and which jobs it takes.",
    example: "runner {\n  tags         = [\"docker\", \"linux\"]\n  concurrent   = 3\n  idle_timeout = \"10m\"\n}",
    attrs: &[
        AttrSchema {
            name: "tags",
            ty: Type::Tags,
            required: false,
            default: Some(Default::EmptyList),
            doc: "Job tags this pool takes; a job goes to an egg that has all of its tags.",
            example: "tags = [\"docker\", \"linux\"]",
        },
        AttrSchema {
            name: "concurrent",
            ty: Type::Int { min: 1, max: 100 },
            required: false,
            default: Some(Default::Int(1)),
            doc: "Jobs one runner runs at the same time.",
            example: "concurrent = 3",
        },
        AttrSchema {
            name: "idle_timeout",
            ty: ANY_DURATION,
            required: false,
            default: Some(Default::Str("10m")),
            doc: "How long an idle runner is kept before it is removed.",
            example: "idle_timeout = \"10m\"",
        },
        AttrSchema {
            name: "timeout",
            ty: Type::Duration { max_s: 7 * DAY },
            required: false,
            default: Some(Default::Str("1h")),
            doc: "The longest a job may run. Serverless runners stop at 60 minutes.",
            example: "timeout = \"45m\"",
        },
        AttrSchema {
            name: "image",
            ty: Type::String,
            required: false,
            default: Some(Default::Str("alpine:3")),
            doc: "Default Docker image for jobs that name none.",
            example: "image = \"alpine:3\"",
        },
        AttrSchema {
            name: "privileged",
            ty: Type::Bool,
            required: false,
            default: Some(Default::Bool(false)),
            doc: "Run the Docker executor privileged (needed for docker-in-docker).",
            example: "privileged = true",
        },
        AttrSchema {
            name: "run_untagged",
            ty: Type::Bool,
            required: false,
            default: Some(Default::Bool(false)),
            doc: "Also take jobs that have no tags.",
            example: "run_untagged = true",
        },
        AttrSchema {
            name: "max_runners",
            ty: Type::Int {
                min: 1,
                max: 10_000,
            },
            required: false,
            default: Some(Default::Int(10)),
            doc: "At most this many runners of the egg exist at once; jobs beyond them wait \
                  for a runner.",
            example: "max_runners = 20",
        },
    ],
    blocks: &[],
    repeatable: false,
    required: false,
    free_attrs: None,
};

/// `gitlab { … }` inside an egg.
pub static GITLAB: BlockSchema = BlockSchema {
    name: "gitlab",
    labels: &[],
    doc: "The GitLab project the egg serves.",
    example:
        "gitlab {\n  project_id   = 12345\n  token_secret = \"vault://gitlab/runner-token\"\n}",
    attrs: &[
        AttrSchema {
            name: "project_id",
            ty: Type::Int {
                min: 1,
                max: i64::MAX,
            },
            required: true,
            default: None,
            doc: "Numeric id of the GitLab project (Settings → General).",
            example: "project_id = 12345",
        },
        AttrSchema {
            name: "token_secret",
            ty: Type::Secret,
            required: true,
            default: None,
            doc: "Where the token that creates runners is kept: `vault://PATH`, \
                  `yc-lockbox://SECRET_ID/KEY` or `aws-sm://NAME`. Never the token itself: \
                  the Nest is a git repository.",
            example: "token_secret = \"vault://gitlab/runner-token\"",
        },
        AttrSchema {
            name: "url",
            ty: Type::Url,
            required: false,
            default: Some(Default::Str("https://gitlab.com")),
            doc: "Base URL of the GitLab instance.",
            example: "url = \"https://gitlab.example.com\"",
        },
    ],
    blocks: &[],
    repeatable: false,
    required: true,
    free_attrs: None,
};

/// `environment { NAME = "value" }` inside an egg or a job.
pub static ENVIRONMENT: BlockSchema = BlockSchema {
    name: "environment",
    labels: &[],
    doc: "Environment variables set for every job. Each attribute is one variable; values \
          are strings (numbers and bools are written as text).",
    example: "environment {\n  DOCKER_DRIVER = \"overlay2\"\n}",
    attrs: &[],
    blocks: &[],
    repeatable: false,
    required: false,
    free_attrs: Some(Type::String),
};

/// `job "NAME" { … }`: a cron self-management job.
pub static JOB: BlockSchema = BlockSchema {
    name: "job",
    labels: &["name"],
    doc: "A self-management job run on a schedule, such as rotating runner tokens.",
    example: "job \"rotate-secrets\" {\n  schedule = \"0 2 * * *\"\n  script   = \"gosling rotate-tokens --all\"\n}",
    attrs: &[
        AttrSchema {
            name: "schedule",
            ty: Type::Cron,
            required: true,
            default: None,
            doc: "When to run, as a five-field cron expression in UTC (minute hour \
                  day-of-month month day-of-week), or `@hourly`, `@daily`, `@weekly`, `@monthly`.",
            example: "schedule = \"0 2 * * *\"",
        },
        AttrSchema {
            name: "script",
            ty: Type::String,
            required: true,
            default: None,
            doc: "The script to run, usually a heredoc.",
            example: "script = \"gosling rotate-tokens --all\"",
        },
        AttrSchema {
            name: "timeout",
            ty: Type::Duration { max_s: DAY },
            required: false,
            default: Some(Default::Str("30m")),
            doc: "The longest a run may take. Jobs on serverless runners stop at 60 minutes.",
            example: "timeout = \"15m\"",
        },
    ],
    blocks: &[&JOB_RUNNER, &ON_FAILURE, &ENVIRONMENT],
    repeatable: true,
    required: false,
    free_attrs: None,
};

/// `runner { … }` inside a job.
pub static JOB_RUNNER: BlockSchema = BlockSchema {
    name: "runner",
    labels: &[],
    doc: "The runner the job needs.",
    example: "runner {\n  type = \"vm\"\n  tags = [\"privileged\"]\n}",
    attrs: &[
        AttrSchema {
            name: "type",
            ty: Type::Enum(RUNNER_TYPES),
            required: false,
            default: Some(Default::Str("vm")),
            doc: "`vm` or `serverless`.",
            example: "type = \"vm\"",
        },
        AttrSchema {
            name: "tags",
            ty: Type::Tags,
            required: false,
            default: Some(Default::EmptyList),
            doc: "Tags the job needs; some egg should provide all of them.",
            example: "tags = [\"privileged\"]",
        },
    ],
    blocks: &[],
    repeatable: false,
    required: false,
    free_attrs: None,
};

/// `on_failure { … }` inside a job.
pub static ON_FAILURE: BlockSchema = BlockSchema {
    name: "on_failure",
    labels: &[],
    doc: "What happens when a run fails.",
    example: "on_failure {\n  notify = [\"ops@example.com\"]\n}",
    attrs: &[
        AttrSchema {
            name: "notify",
            ty: Type::List(&Type::Email),
            required: false,
            default: Some(Default::EmptyList),
            doc: "E-mail addresses to tell.",
            example: "notify = [\"ops@example.com\"]",
        },
        AttrSchema {
            name: "retry",
            ty: Type::Int { min: 0, max: 10 },
            required: false,
            default: Some(Default::Int(0)),
            doc: "How many times to retry before giving up.",
            example: "retry = 2",
        },
    ],
    blocks: &[],
    repeatable: false,
    required: false,
    free_attrs: None,
};

/// `rift "NAME" { … }`: a Rift cache server eggs may use.
pub static RIFT: BlockSchema = BlockSchema {
    name: "rift",
    labels: &["name"],
    doc: "A Rift, the runners' cache server: gitlab-runner's distributed cache (S3 API) and, \
          optionally, a Docker Engine API proxy. An egg uses it with `rift = \"NAME\"`; an egg \
          without `rift` uses no cache and its runners never contact a Rift, and a Rift that \
          is down only costs cache misses (Property 22). The name is unique in the Nest.",
    example: "rift \"main\" {\n  address      = \"https://rift.internal:9443\"\n  docker_proxy = true\n  tls_ca       = <<-EOT\n    -----BEGIN CERTIFICATE-----\n    MIIBszCCAVmgAwIBAgIUQk9HR0xJTkc=\n    -----END CERTIFICATE-----\n  EOT\n}",
    attrs: &[
        AttrSchema {
            name: "address",
            ty: Type::Url,
            required: true,
            default: None,
            doc: "Base URL of Rift's S3 API. `https://` means TLS (runners check Rift's \
                  certificate, against `tls_ca` when given); `http://` is for a Rift behind a \
                  TLS-terminating proxy or on a private network.",
            example: "address = \"https://rift.internal:9443\"",
        },
        AttrSchema {
            name: "bucket",
            ty: Type::String,
            required: false,
            default: Some(Default::Str("runner-cache")),
            doc: "The S3 bucket name runners use in Rift: letters, digits, `.`, `-` and `_`, \
                  not starting with `.`.",
            example: "bucket = \"runner-cache\"",
        },
        AttrSchema {
            name: "tls_ca",
            ty: Type::Certificate,
            required: false,
            default: None,
            doc: "PEM of the CA that signed Rift's certificate, when it is not publicly \
                  trusted (usually a heredoc). Only for an `https://` address. A certificate \
                  is public: never put a private key here.",
            example: "tls_ca = \"-----BEGIN CERTIFICATE-----\\nMIIBszCCAVmgAwIBAgIUQk9HR0xJTkc=\\n-----END CERTIFICATE-----\\n\"",
        },
        AttrSchema {
            name: "docker_proxy",
            ty: Type::Bool,
            required: false,
            default: Some(Default::Bool(false)),
            doc: "Runners also use Rift's Docker Engine API proxy as their Docker daemon \
                  (`DOCKER_HOST`), so image layers are cached too.",
            example: "docker_proxy = true",
        },
        AttrSchema {
            name: "docker_address",
            ty: Type::String,
            required: false,
            default: None,
            doc: "Address of Rift's Docker API proxy, `tcp://HOST:PORT`. Unset: \
                  `tcp://<host of address>:2375`. Only used with `docker_proxy = true`.",
            example: "docker_address = \"tcp://rift.internal:2375\"",
        },
    ],
    blocks: &[],
    repeatable: true,
    required: false,
    free_attrs: None,
};

/// `uglyfox { … }`: pruning and pool policy (at most one in the Nest).
pub static UGLYFOX: BlockSchema = BlockSchema {
    name: "uglyfox",
    labels: &[],
    doc: "The UglyFox policy: when runners are pruned, the sizes of the Apex (hot) and Nadir \
          (cold) pools, and rules. At most one `uglyfox` block in the Nest, usually in `UF/`.",
    example: "uglyfox {\n  apex {\n    max_count = 10\n  }\n}",
    attrs: &[],
    blocks: &[&PRUNING, &APEX, &NADIR, &THROTTLE, &POLICIES],
    repeatable: false,
    required: false,
    free_attrs: None,
};

/// `pruning { … }` inside uglyfox.
pub static PRUNING: BlockSchema = BlockSchema {
    name: "pruning",
    labels: &[],
    doc: "Health-check thresholds.",
    example: "pruning {\n  failed_threshold = 3\n  max_age          = \"24h\"\n}",
    attrs: &[
        AttrSchema {
            name: "failed_threshold",
            ty: Type::Int { min: 1, max: 1000 },
            required: false,
            default: Some(Default::Int(3)),
            doc: "Failures after which a runner is terminated.",
            example: "failed_threshold = 3",
        },
        AttrSchema {
            name: "max_age",
            ty: ANY_DURATION,
            required: false,
            default: Some(Default::Str("24h")),
            doc: "Runners older than this are terminated.",
            example: "max_age = \"24h\"",
        },
        AttrSchema {
            name: "check_interval",
            ty: Type::Duration { max_s: DAY },
            required: false,
            default: Some(Default::Str("5m")),
            doc: "Time between health checks.",
            example: "check_interval = \"5m\"",
        },
    ],
    blocks: &[],
    repeatable: false,
    required: false,
    free_attrs: None,
};

/// `throttle { … }` inside uglyfox.
pub static THROTTLE: BlockSchema = BlockSchema {
    name: "throttle",
    labels: &[],
    doc: "How many runners one UglyFox pass may create and terminate, so that a wrong rule \
          or a burst of failures cannot replace the whole fleet at once; what is left waits \
          for the next pass. 0 allows none.",
    example: "throttle {\n  create_per_pass    = 10\n  terminate_per_pass = 5\n}",
    attrs: &[
        AttrSchema {
            name: "create_per_pass",
            ty: Type::Int {
                min: 0,
                max: 10_000,
            },
            required: false,
            default: Some(Default::Int(10)),
            doc: "Runners one pass may create (to keep the pools at their `min_count`).",
            example: "create_per_pass = 10",
        },
        AttrSchema {
            name: "terminate_per_pass",
            ty: Type::Int {
                min: 0,
                max: 10_000,
            },
            required: false,
            default: Some(Default::Int(10)),
            doc: "Runners one pass may terminate (rules, pruning, pool trims).",
            example: "terminate_per_pass = 5",
        },
    ],
    blocks: &[],
    repeatable: false,
    required: false,
    free_attrs: None,
};

/// `scale "NAME" { … }` inside apex and nadir.
pub static SCALE: BlockSchema = BlockSchema {
    name: "scale",
    labels: &["name"],
    doc: "A recurring period, such as working hours, during which the pool keeps `min_count` \
          runners instead of its own `min_count`. It starts whenever `from` fires and ends \
          whenever `to` fires, both read as wall-clock times in `timezone` (a time skipped \
          when the clocks go forward counts at the moment they jump; one passed twice when \
          they go back counts the first time). When several periods are on, the largest \
          `min_count` wins; it may also be lower than the pool's own (nights, weekends).",
    example: "scale \"working-hours\" {\n  from      = \"0 8 * * 1-5\"\n  to        = \"0 19 * * 1-5\"\n  timezone  = \"Europe/Moscow\"\n  min_count = 6\n}",
    attrs: &[
        AttrSchema {
            name: "from",
            ty: Type::Cron,
            required: true,
            default: None,
            doc: "When the period starts: a five-field cron expression in `timezone`.",
            example: "from = \"0 8 * * 1-5\"",
        },
        AttrSchema {
            name: "to",
            ty: Type::Cron,
            required: true,
            default: None,
            doc: "When it ends: a five-field cron expression in `timezone`.",
            example: "to = \"0 19 * * 1-5\"",
        },
        AttrSchema {
            name: "timezone",
            ty: Type::TimeZone,
            required: false,
            default: Some(Default::Str("UTC")),
            doc: "The IANA time zone `from` and `to` are read in, such as `Europe/Moscow` or \
                  `America/New_York`.",
            example: "timezone = \"Europe/Moscow\"",
        },
        AttrSchema {
            name: "min_count",
            ty: Type::Int {
                min: 0,
                max: 10_000,
            },
            required: true,
            default: None,
            doc: "The pool's `min_count` while the period is on; not more than the pool's \
                  `max_count`.",
            example: "min_count = 4",
        },
    ],
    blocks: &[],
    repeatable: true,
    required: false,
    free_attrs: None,
};

const POOL_ATTRS_MAX: AttrSchema = AttrSchema {
    name: "max_count",
    ty: Type::Int {
        min: 0,
        max: 10_000,
    },
    required: false,
    default: Some(Default::Int(10)),
    doc: "At most this many runners in the pool.",
    example: "max_count = 10",
};

const POOL_ATTRS_MIN: AttrSchema = AttrSchema {
    name: "min_count",
    ty: Type::Int {
        min: 0,
        max: 10_000,
    },
    required: false,
    default: Some(Default::Int(0)),
    doc: "At least this many runners are kept in the pool; not more than `max_count`.",
    example: "min_count = 2",
};

/// `apex { … }` inside uglyfox.
pub static APEX: BlockSchema = BlockSchema {
    name: "apex",
    labels: &[],
    doc: "The Apex pool: warm runners ready for jobs.",
    example: "apex {\n  max_count = 10\n  min_count = 2\n}",
    attrs: &[
        POOL_ATTRS_MAX,
        POOL_ATTRS_MIN,
        AttrSchema {
            name: "idle_timeout",
            ty: ANY_DURATION,
            required: false,
            default: None,
            doc: "Idle Apex runners are demoted to Nadir after this long (unset: never).",
            example: "idle_timeout = \"1h\"",
        },
    ],
    blocks: &[&SCALE],
    repeatable: false,
    required: false,
    free_attrs: None,
};

/// `nadir { … }` inside uglyfox.
pub static NADIR: BlockSchema = BlockSchema {
    name: "nadir",
    labels: &[],
    doc: "The Nadir pool: cold runners kept cheaply until needed.",
    example: "nadir {\n  max_count    = 5\n  idle_timeout = \"30m\"\n}",
    attrs: &[
        AttrSchema {
            default: Some(Default::Int(5)),
            ..POOL_ATTRS_MAX
        },
        POOL_ATTRS_MIN,
        AttrSchema {
            name: "idle_timeout",
            ty: ANY_DURATION,
            required: false,
            default: Some(Default::Str("30m")),
            doc: "Idle Nadir runners are terminated after this long.",
            example: "idle_timeout = \"30m\"",
        },
    ],
    blocks: &[&SCALE],
    repeatable: false,
    required: false,
    free_attrs: None,
};

/// `policies { rule "NAME" { … } }` inside uglyfox.
pub static POLICIES: BlockSchema = BlockSchema {
    name: "policies",
    labels: &[],
    doc: "Rules UglyFox applies to every runner, in order; the first rule whose condition \
          holds acts.",
    example: "policies {\n  rule \"terminate_old_failed\" {\n    condition = \"failed_count >= 3 AND age > 1h\"\n    action    = \"terminate\"\n  }\n}",
    attrs: &[],
    blocks: &[&RULE],
    repeatable: false,
    required: false,
    free_attrs: None,
};

/// `rule "NAME" { … }` inside policies.
pub static RULE: BlockSchema = BlockSchema {
    name: "rule",
    labels: &["name"],
    doc: "When `condition` holds for a runner, do `action`.",
    example: "rule \"demote_idle\" {\n  condition = \"state == 'apex' AND idle_time > 30m\"\n  action    = \"demote_to_nadir\"\n}",
    attrs: &[
        AttrSchema {
            name: "condition",
            ty: Type::Condition,
            required: true,
            default: None,
            doc: "A policy condition over runner metrics, e.g. `failed_count >= 3 AND age > 1h`; \
                  see the language reference.",
            example: "condition = \"failed_count >= 3 AND age > 1h\"",
        },
        AttrSchema {
            name: "action",
            ty: Type::Enum(fly_ir::Action::NAMES),
            required: true,
            default: None,
            doc: "`terminate`, `demote_to_nadir`, `promote_to_apex`, `restart` or `notify`.",
            example: "action = \"terminate\"",
        },
    ],
    blocks: &[],
    repeatable: true,
    required: false,
    free_attrs: None,
};

/// Known regions and zones per provider.
pub fn known_regions(provider: &str) -> &'static [&'static str] {
    match provider {
        "yandex" => &[
            "ru-central1",
            "ru-central1-a",
            "ru-central1-b",
            "ru-central1-d",
            "kz1",
            "kz1-a",
        ],
        "aws" => &[
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
            "ca-central-1",
            "sa-east-1",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
            "eu-central-1",
            "eu-central-2",
            "eu-north-1",
            "eu-south-1",
            "eu-south-2",
            "ap-south-1",
            "ap-south-2",
            "ap-east-1",
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-northeast-3",
            "ap-southeast-1",
            "ap-southeast-2",
            "ap-southeast-3",
            "ap-southeast-4",
            "me-south-1",
            "me-central-1",
            "af-south-1",
            "il-central-1",
        ],
        _ => &[],
    }
}
