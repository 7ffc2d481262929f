//! Diagnostic codes of the checker (`F1xxx`); syntax codes (`F00xx`) live in fly-syntax.
#![allow(missing_docs)]

use fly_syntax::Code;

pub const UNKNOWN_BLOCK: Code = Code("F1001");
pub const UNKNOWN_ATTRIBUTE: Code = Code("F1002");
pub const MISSING_ATTRIBUTE: Code = Code("F1003");
pub const DUPLICATE_ATTRIBUTE: Code = Code("F1004");
pub const TYPE_MISMATCH: Code = Code("F1005");
pub const OUT_OF_RANGE: Code = Code("F1006");
pub const INVALID_ENUM: Code = Code("F1007");
pub const INVALID_DURATION: Code = Code("F1008");
pub const INVALID_CRON: Code = Code("F1009");
pub const PLAINTEXT_SECRET: Code = Code("F1010");
pub const UNKNOWN_REGION: Code = Code("F1011");
pub const INVALID_EMAIL: Code = Code("F1012");
pub const LABELS: Code = Code("F1013");
pub const DUPLICATE_BLOCK: Code = Code("F1014");
pub const MISSING_BLOCK: Code = Code("F1015");
pub const INVALID_TAG: Code = Code("F1016");
pub const INVALID_URL: Code = Code("F1017");
pub const INVALID_TIME_ZONE: Code = Code("F1018");
pub const INVALID_CERTIFICATE: Code = Code("F1019");
pub const UNKNOWN_REFERENCE: Code = Code("F1020");
pub const REFERENCE_CYCLE: Code = Code("F1021");
pub const UNSET_ENV: Code = Code("F1022");
pub const DUPLICATE_VARIABLE: Code = Code("F1023");
pub const BAD_INTERPOLATION: Code = Code("F1024");
pub const DUPLICATE_NAME: Code = Code("F1030");
pub const UNSERVED_TAGS: Code = Code("F1031");
pub const SERVERLESS_LIMIT: Code = Code("F1032");
pub const POOL_SIZES: Code = Code("F1033");
pub const UNKNOWN_RIFT: Code = Code("F1034");
pub const RIFT_SETTING_UNUSED: Code = Code("F1035");
pub const INVALID_BUCKET: Code = Code("F1036");
pub const CONDITION_SYNTAX: Code = Code("F1040");
pub const CONDITION_TYPE: Code = Code("F1041");
pub const UNKNOWN_METRIC: Code = Code("F1042");
pub const UNKNOWN_STATE: Code = Code("F1043");
