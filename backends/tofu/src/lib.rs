//! OpenTofu for runners: configurations rendered from templates, a tofu runner with stored plans, and binary management.
