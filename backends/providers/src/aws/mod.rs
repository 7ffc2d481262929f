//! AWS: VM runners on EC2 ([`Ec2Provider`]) and serverless runners on ECS Fargate
//! ([`EcsProvider`]). The clients are made on first use from [`AwsSettings`] (region,
//! endpoint, credentials from the usual AWS chain unless given), with the SDK's standard
//! retry mode.

pub mod ec2;
pub mod ecs;

pub use ec2::{client_token, ec2_launch, run_instances_input, Ec2Launch, Ec2Provider};
pub use ecs::{ecs_task, EcsProvider, EcsTask};

use crate::settings::AwsSettings;
use tokio::sync::OnceCell;

/// The SDK configuration, loaded once.
#[derive(Debug, Default)]
pub(crate) struct SdkConfigCell(OnceCell<aws_types::SdkConfig>);

impl SdkConfigCell {
    pub(crate) async fn get(&self, s: &AwsSettings) -> &aws_types::SdkConfig {
        self.0
            .get_or_init(|| async {
                gosling_state::aws_config(
                    s.endpoint.as_deref(),
                    Some(&s.region),
                    s.credentials.as_ref(),
                )
                .await
            })
            .await
    }
}

/// The tags every runner resource carries.
pub fn runner_tags(egg: &str, runner_id: &str) -> Vec<(String, String)> {
    vec![
        ("gosling:egg".to_string(), egg.to_string()),
        ("gosling:runner".to_string(), runner_id.to_string()),
        ("Name".to_string(), format!("gosling-{egg}-{runner_id}")),
    ]
}
