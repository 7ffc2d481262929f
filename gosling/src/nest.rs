//! Finding the Nest a command works on.

use std::path::{Path, PathBuf};

/// The directories that make a directory a Nest (Property 5).
pub const NEST_DIRS: [&str; 3] = ["Eggs", "Jobs", "UF"];

/// Why no Nest was found.
#[derive(Debug, thiserror::Error)]
pub enum NestError {
    /// No Nest at or above the starting directory.
    #[error("no Nest at `{}` or above it (a Nest has Eggs/, Jobs/ and UF/). Run 'gosling init' first", .0.display())]
    NotFound(PathBuf),
    /// The current directory cannot be read.
    #[error("cannot read the current directory: {0}")]
    Cwd(std::io::Error),
}

/// True when `dir` looks like a Nest: it has at least one of `Eggs/`, `Jobs/`, `UF/`.
pub fn is_nest(dir: &Path) -> bool {
    NEST_DIRS.iter().any(|d| dir.join(d).is_dir())
}

/// The Nest to work on: `explicit` if given (it must be a Nest), else the current directory
/// or the nearest parent that is a Nest.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, NestError> {
    if let Some(p) = explicit {
        return if is_nest(p) {
            Ok(p.to_path_buf())
        } else {
            Err(NestError::NotFound(p.to_path_buf()))
        };
    }
    let cwd = std::env::current_dir().map_err(NestError::Cwd)?;
    let mut dir: &Path = &cwd;
    loop {
        if is_nest(dir) {
            return Ok(dir.to_path_buf());
        }
        match dir.parent() {
            Some(p) => dir = p,
            None => return Err(NestError::NotFound(cwd)),
        }
    }
}
