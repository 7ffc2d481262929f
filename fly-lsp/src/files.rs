//! Finding `.fly` files.

use std::path::{Path, PathBuf};

/// Why the inputs could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// A path given on the command line does not exist.
    #[error("`{0}` does not exist")]
    Missing(PathBuf),
    /// A directory could not be walked.
    #[error("cannot read `{path}`: {source}")]
    Walk {
        /// Where.
        path: PathBuf,
        /// Why.
        source: walkdir::Error,
    },
}

/// Expands files and directories into the `.fly` files they name, sorted, without
/// duplicates. Directories are walked recursively; hidden directories (`.git`, `.gosling`)
/// and `target` are skipped. A file named explicitly is taken whatever its extension.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, FilesError> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_file() {
            out.push(path.clone());
            continue;
        }
        if !path.exists() {
            return Err(FilesError::Missing(path.clone()));
        }
        let walker = walkdir::WalkDir::new(path)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !is_skipped_dir(e.path(), e.file_type().is_dir()));
        for entry in walker {
            let entry = entry.map_err(|source| FilesError::Walk {
                path: path.clone(),
                source,
            })?;
            if entry.file_type().is_file() && entry.path().extension().is_some_and(|e| e == "fly") {
                out.push(entry.into_path());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn is_skipped_dir(path: &Path, is_dir: bool) -> bool {
    is_dir
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.') || n == "target" || n == "node_modules")
}

/// A path as shown to the user: relative as given, with `/` separators.
pub fn display(path: &Path) -> String {
    let s = path.to_string_lossy().replace('\\', "/");
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}
