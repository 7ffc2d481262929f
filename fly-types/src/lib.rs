//! The Fly type checker and compiler: schema, checks, interpolation, policy conditions,
//! and lowering of a whole Nest to the deployment IR ([`fly_ir::Deployment`]).
//!
//! ```
//! use fly_types::{compile, Env, SourceFile};
//! let files = vec![SourceFile::new("Eggs/app.fly", r#"
//! egg "app" {
//!   type = "vm"
//!   cloud {
//!     provider = "aws"
//!     region   = "eu-west-1"
//!   }
//!   gitlab {
//!     project_id   = 7
//!     token_secret = "vault://gitlab/token"
//!   }
//! }
//! "#)];
//! let out = compile(files, &Env::default());
//! assert!(!out.has_errors());
//! assert_eq!(out.ir.unwrap().eggs[0].resources.cpu, 2);
//! ```
#![warn(missing_docs)]

mod check;
pub mod codes;
pub mod condition;
pub mod duration;
mod eval;
mod lower;
mod nest;
pub mod reference;
pub mod schema;

pub use eval::{Env, Value, ValueKind};
pub use fly_ir as ir;

use fly_syntax::{Diagnostic, Parse};
use std::path::{Path, PathBuf};

/// One `.fly` file of a Nest.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path relative to the Nest root, `/`-separated (shown in messages and the source map).
    pub path: String,
    /// Its text.
    pub text: String,
}

impl SourceFile {
    /// A file from its path and text.
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            path: path.into(),
            text: text.into(),
        }
    }
}

/// Diagnostics per file.
#[derive(Debug, Default)]
pub struct Diags {
    per_file: Vec<Vec<Diagnostic>>,
}

impl Diags {
    fn new(files: usize) -> Self {
        Diags {
            per_file: vec![Vec::new(); files],
        }
    }

    /// Records a diagnostic for file number `file`.
    pub fn push(&mut self, file: usize, d: Diagnostic) {
        if let Some(v) = self.per_file.get_mut(file) {
            v.push(d);
        }
    }
}

/// The result of compiling a Nest.
#[derive(Debug)]
pub struct Compilation {
    /// Per input file: its parse and every diagnostic (syntax, types, Nest-wide), sorted.
    pub files: Vec<CheckedFile>,
    /// The IR, when built ([`compile`]) and there are no errors.
    pub ir: Option<fly_ir::Deployment>,
}

/// One file's outcome.
#[derive(Debug)]
pub struct CheckedFile {
    /// Its path as given.
    pub path: String,
    /// Its text.
    pub text: String,
    /// Its parse.
    pub parse: Parse,
    /// Its diagnostics, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compilation {
    /// True when any file has an error.
    pub fn has_errors(&self) -> bool {
        self.files
            .iter()
            .any(|f| f.diagnostics.iter().any(Diagnostic::is_error))
    }

    /// Every diagnostic with its file path.
    pub fn diagnostics(&self) -> impl Iterator<Item = (&str, &Diagnostic)> {
        self.files
            .iter()
            .flat_map(|f| f.diagnostics.iter().map(move |d| (f.path.as_str(), d)))
    }
}

/// What a run of the compiler is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Diagnostics only (`fly check`, `gosling validate`, the editor): no IR is built.
    Check,
    /// Diagnostics and, when there is no error, the IR (`fly build`, `gosling deploy`).
    Build,
}

/// Parses, checks and lowers the files of a Nest. Every problem in every file is reported;
/// the IR is produced only when there is no error.
pub fn compile(files: Vec<SourceFile>, env: &Env) -> Compilation {
    run(files, env, Goal::Build)
}

/// Parses and checks the files of a Nest, reporting every problem, without building the IR
/// ([`Compilation::ir`] is `None`): about a quarter less time and memory than [`compile`].
pub fn check(files: Vec<SourceFile>, env: &Env) -> Compilation {
    run(files, env, Goal::Check)
}

fn run(files: Vec<SourceFile>, env: &Env, goal: Goal) -> Compilation {
    let parses: Vec<Parse> = files.iter().map(|f| fly_syntax::parse(&f.text)).collect();
    let inputs: Vec<Input<'_>> = files
        .iter()
        .zip(&parses)
        .map(|(f, parse)| Input {
            path: &f.path,
            text: &f.text,
            parse,
        })
        .collect();
    let analysis = analyze(&inputs, env, goal);
    drop(inputs);
    let mut out_files: Vec<CheckedFile> = Vec::with_capacity(files.len());
    for ((file, parse), mut ds) in files.into_iter().zip(parses).zip(analysis.diagnostics) {
        let mut all = parse.diagnostics.clone();
        all.append(&mut ds);
        all.sort_by_key(|d| (d.span.start, d.span.end));
        out_files.push(CheckedFile {
            path: file.path,
            text: file.text,
            parse,
            diagnostics: all,
        });
    }
    Compilation {
        files: out_files,
        ir: analysis.ir,
    }
}

/// What the checker found in already-parsed files (the language server keeps parses of
/// unchanged files and calls this on every edit).
#[derive(Debug)]
pub struct Analysis {
    /// Checker and Nest-wide diagnostics per file (syntax diagnostics are in the parses).
    pub diagnostics: Vec<Vec<Diagnostic>>,
    /// The IR, for [`Goal::Build`] when no file has an error.
    pub ir: Option<fly_ir::Deployment>,
    /// Every variable of the Nest: where it is defined and its value, if it resolves.
    pub vars: std::collections::BTreeMap<String, VarInfo>,
}

/// A variable of the Nest.
#[derive(Clone, Debug)]
pub struct VarInfo {
    /// Index of the file that defines it.
    pub file: usize,
    /// The span of its name in the `vars` block.
    pub name_span: fly_syntax::Span,
    /// Its value, when it resolves.
    pub value: Option<Value>,
}

/// A parsed file handed to [`analyze`].
#[derive(Clone, Copy)]
pub struct Input<'a> {
    /// Path relative to the Nest root.
    pub path: &'a str,
    /// Its text.
    pub text: &'a str,
    /// Its parse.
    pub parse: &'a Parse,
}

/// Checks parsed files (and lowers them for [`Goal::Build`]); diagnostics come back indexed
/// like `files`.
pub fn analyze(files: &[Input<'_>], env: &Env, goal: Goal) -> Analysis {
    let mut diags = Diags::new(files.len());
    let (checked, vars) = nest::check(files, env, &mut diags);
    let has_errors = files.iter().any(|f| f.parse.has_errors())
        || diags.per_file.iter().flatten().any(Diagnostic::is_error);
    let ir = (goal == Goal::Build && !has_errors).then(|| lower::lower(files, &checked));
    Analysis {
        diagnostics: diags.per_file,
        ir,
        vars,
    }
}

/// Errors loading a Nest from disk.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory could not be walked.
    #[error("cannot read the Nest at `{}`: {source}", path.display())]
    Walk {
        /// Where.
        path: PathBuf,
        /// Why.
        source: walkdir::Error,
    },
    /// A file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Reads every `*.fly` file under `root` (skipping hidden directories and `target`), in
/// path order, with paths relative to `root`.
pub fn load_nest(root: &Path) -> Result<Vec<SourceFile>, LoadError> {
    let mut out = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0
                || !(e.file_type().is_dir()
                    && e.file_name()
                        .to_str()
                        .is_some_and(|n| n.starts_with('.') || n == "target"))
        });
    for entry in walker {
        let entry = entry.map_err(|source| LoadError::Walk {
            path: root.to_path_buf(),
            source,
        })?;
        if entry.file_type().is_file() && entry.path().extension().is_some_and(|e| e == "fly") {
            let text = std::fs::read_to_string(entry.path()).map_err(|source| LoadError::Read {
                path: entry.path().to_path_buf(),
                source,
            })?;
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            out.push(SourceFile::new(
                rel.to_string_lossy().replace('\\', "/"),
                text,
            ));
        }
    }
    Ok(out)
}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
pub fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, c)| *score >= 0.8 || (word.len() > 2 && strsim::levenshtein(word, c) <= 2))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
