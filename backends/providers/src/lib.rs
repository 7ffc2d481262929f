//! Cloud providers for runners: AWS (EC2, ECS Fargate) and Yandex Cloud (Compute, Serverless Containers), behind gosling-fleet's Provider interface.
