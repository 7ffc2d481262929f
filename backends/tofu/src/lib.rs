//! OpenTofu for runners: configurations rendered from templates, a tofu runner with
//! stored plans, and binary management; and [`assembly`], where MotherGoose and UglyFox
//! get their runner providers (local, SDK and OpenTofu) from one choice.
#![warn(missing_docs)]

pub mod assembly;
pub mod binary;
pub mod cache;
pub mod cli;
pub mod error;
pub mod hcl;
pub mod plans;
pub mod provider;
pub mod render;
pub mod runner;
pub mod workspace;

pub use assembly::{build_providers, AssemblyError, ProviderChoice, ProvidersFile, Stores};
pub use binary::{Auth, BinaryError, Platform, Source, UpdateReport, Updater};
pub use cli::Tofu;
pub use error::{TofuError, Verdict};
pub use plans::{Action, PlanStore};
pub use provider::TofuProvider;
pub use render::{
    render, render_tofurc, BackendSettings, RenderError, RenderOptions, Rendered, TofuSettings,
};
pub use runner::{RunnerConfig, TofuRunner};
pub use workspace::{ConfigBundle, Workspace};
