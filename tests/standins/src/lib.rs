//! Stand-ins for the services this workplace cannot run, each following the documented
//! behaviour of the real one, for the tests and for trying the system on one machine:
//! [`Moto`] (AWS: DynamoDB, S3, SQS, EC2, ECS, through `moto_server`) and [`gitlab::GitLab`]
//! (the GitLab REST and runner APIs, sending real-shaped, signed webhooks) and
//! [`yandex::FakeYandex`] (Yandex Cloud's IAM, Compute, Serverless Containers and operations).
#![warn(missing_docs)]

pub mod fake_gitlab_runner;
pub mod fake_tofu;
pub mod gitlab;
pub mod moto;
pub mod procs;
pub mod yandex;

pub use moto::{free_port, Moto};
