//! The `fly` command-line tool and (in a later step) the Fly language server.
//!
//! Like rust-analyzer's binary, one executable serves both the editor (`fly lsp`) and the
//! command line (`fly check`, `fly fmt`); the library half holds what both share.

pub mod cli;
pub mod features;
pub mod files;
pub mod server;
pub mod world;
