//! The language server's state: every `.fly` file of the Nest (open buffers and files on
//! disk), their parses, and the latest analysis of the whole Nest.
//!
//! All feature queries are plain functions of a [`World`]; the server only locks, calls and
//! converts. Editing a file re-parses that file alone and re-checks the Nest (fast: the
//! checker is linear and parses of unchanged files are kept).

use fly_syntax::{Diagnostic, Encoding, LineCol, LineIndex, Parse, Span};
use fly_types::{analyze, Analysis, Env, Goal, Input};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One file of the Nest.
pub struct Doc {
    /// The document URI as the client spells it.
    pub uri: String,
    /// Its path relative to the Nest root (or the URI when outside it).
    pub path: String,
    /// Current text.
    pub text: String,
    /// Version of an open buffer; `None` for a file only on disk.
    pub version: Option<i32>,
    /// Parse of `text`.
    pub parse: Parse,
    /// Line index of `text`.
    pub index: LineIndex,
}

impl Doc {
    fn new(uri: String, path: String, text: String, version: Option<i32>) -> Self {
        let parse = fly_syntax::parse(&text);
        let index = LineIndex::new(&text);
        Doc {
            uri,
            path,
            text,
            version,
            parse,
            index,
        }
    }

    fn set_text(&mut self, text: String) {
        self.parse = fly_syntax::parse(&text);
        self.index = LineIndex::new(&text);
        self.text = text;
    }

    /// Byte offset of an LSP position (clamped into the text).
    pub fn offset(&self, line: u32, character: u32, enc: Encoding) -> usize {
        self.index.offset(
            &self.text,
            LineCol {
                line,
                col: character,
            },
            enc,
        )
    }

    /// LSP line/character of a byte offset.
    pub fn position(&self, offset: usize, enc: Encoding) -> LineCol {
        self.index.line_col(&self.text, offset, enc)
    }
}

/// An incremental edit: replace `range` (or everything) with `text`.
pub struct Change {
    /// `(start line, start character, end line, end character)`; `None` for the whole text.
    pub range: Option<(u32, u32, u32, u32)>,
    /// Replacement text.
    pub text: String,
}

/// The Nest as the server sees it.
pub struct World {
    /// Workspace root, if the client gave one.
    pub root: Option<PathBuf>,
    /// Position encoding negotiated with the client.
    pub encoding: Encoding,
    /// Every known file; a file's index is its id.
    pub docs: Vec<Doc>,
    by_uri: HashMap<String, usize>,
    /// Environment for `${env.NAME}`.
    pub env: Env,
    /// Latest analysis of all docs (indexes match `docs`).
    pub analysis: Option<Analysis>,
    /// Edits that arrived ahead of their turn, per document: version → changes.
    pending: HashMap<String, Vec<(i32, Vec<Change>)>>,
}

impl World {
    /// An empty world.
    pub fn new(root: Option<PathBuf>, encoding: Encoding) -> Self {
        World {
            root,
            encoding,
            docs: Vec::new(),
            by_uri: HashMap::new(),
            env: Env::from_process(false),
            analysis: None,
            pending: HashMap::new(),
        }
    }

    /// Reads every `*.fly` file under the root (nothing to read without a root).
    pub fn index_root(&mut self) -> Result<(), fly_types::LoadError> {
        let Some(root) = self.root.clone() else {
            return Ok(());
        };
        let files = fly_types::load_nest(&root)?;
        for f in files {
            let uri = file_uri(&root.join(&f.path));
            if !self.by_uri.contains_key(&uri) {
                self.insert(Doc::new(uri, f.path, f.text, None));
            }
        }
        Ok(())
    }

    fn insert(&mut self, doc: Doc) -> usize {
        let id = self.docs.len();
        self.by_uri.insert(doc.uri.clone(), id);
        self.docs.push(doc);
        id
    }

    /// The id of the document at `uri`.
    pub fn id(&self, uri: &str) -> Option<usize> {
        self.by_uri.get(uri).copied()
    }

    /// The document at `uri`.
    pub fn doc(&self, uri: &str) -> Option<&Doc> {
        self.id(uri).map(|i| &self.docs[i])
    }

    /// A path relative to the root for `uri`.
    fn relative(&self, uri: &str) -> String {
        let path = uri_path(uri);
        match (&self.root, &path) {
            (Some(root), Some(p)) => p
                .strip_prefix(root)
                .map(|r| r.to_string_lossy().replace('\\', "/"))
                .unwrap_or_else(|_| p.to_string_lossy().into_owned()),
            (None, Some(p)) => p.to_string_lossy().into_owned(),
            _ => uri.to_string(),
        }
    }

    /// An editor opened a buffer.
    pub fn open(&mut self, uri: &str, text: String, version: i32) {
        self.pending.remove(uri);
        match self.id(uri) {
            Some(id) => {
                let doc = &mut self.docs[id];
                doc.version = Some(version);
                doc.set_text(text);
            }
            None => {
                let path = self.relative(uri);
                self.insert(Doc::new(uri.to_string(), path, text, Some(version)));
            }
        }
    }

    /// Applies the changes of `version`, strictly in version order: a stale version is
    /// ignored and an early one waits for those before it. Returns whether the text changed.
    pub fn change(&mut self, uri: &str, version: i32, changes: Vec<Change>) -> bool {
        let Some(id) = self.id(uri) else { return false };
        let current = self.docs[id].version.unwrap_or(0);
        if version <= current {
            return false;
        }
        if version > current + 1 {
            self.pending
                .entry(uri.to_string())
                .or_default()
                .push((version, changes));
            return false;
        }
        self.apply(id, version, changes);
        // Anything queued that is now in turn.
        loop {
            let next = self.docs[id].version.unwrap_or(0) + 1;
            let Some(queue) = self.pending.get_mut(uri) else {
                break;
            };
            let Some(pos) = queue.iter().position(|(v, _)| *v == next) else {
                break;
            };
            let (v, changes) = queue.swap_remove(pos);
            self.apply(id, v, changes);
        }
        true
    }

    fn apply(&mut self, id: usize, version: i32, changes: Vec<Change>) {
        let enc = self.encoding;
        let doc = &mut self.docs[id];
        let mut text = std::mem::take(&mut doc.text);
        for change in changes {
            match change.range {
                None => text = change.text,
                Some((sl, sc, el, ec)) => {
                    let index = LineIndex::new(&text);
                    let start = index.offset(&text, LineCol { line: sl, col: sc }, enc);
                    let end = index.offset(&text, LineCol { line: el, col: ec }, enc);
                    let (start, end) = (start.min(end), end.max(start));
                    text.replace_range(start..end, &change.text);
                }
            }
        }
        doc.version = Some(version);
        doc.set_text(text);
    }

    /// A buffer was closed: the file on disk (if any) becomes the truth again.
    pub fn close(&mut self, uri: &str) {
        self.pending.remove(uri);
        let Some(id) = self.id(uri) else { return };
        match uri_path(uri).and_then(|p| std::fs::read_to_string(p).ok()) {
            Some(text) => {
                let doc = &mut self.docs[id];
                doc.version = None;
                doc.set_text(text);
            }
            None => {
                // Keep the id stable; an empty, closed document checks as nothing.
                let doc = &mut self.docs[id];
                doc.version = None;
                doc.set_text(String::new());
            }
        }
    }

    /// A file changed on disk (watched-files notification); open buffers win.
    pub fn disk_changed(&mut self, uri: &str, deleted: bool) {
        let text = if deleted {
            String::new()
        } else {
            match uri_path(uri).and_then(|p| std::fs::read_to_string(p).ok()) {
                Some(t) => t,
                None => return,
            }
        };
        match self.id(uri) {
            Some(id) if self.docs[id].version.is_some() => {}
            Some(id) => self.docs[id].set_text(text),
            None if !deleted => {
                let path = self.relative(uri);
                self.insert(Doc::new(uri.to_string(), path, text, None));
            }
            None => {}
        }
    }

    /// Re-checks the whole Nest.
    pub fn reanalyze(&mut self) {
        let inputs: Vec<Input<'_>> = self
            .docs
            .iter()
            .map(|d| Input {
                path: &d.path,
                text: &d.text,
                parse: &d.parse,
            })
            .collect();
        let analysis = analyze(&inputs, &self.env, Goal::Check);
        self.analysis = Some(analysis);
    }

    /// All diagnostics of document `id` (syntax and checker), in source order.
    pub fn diagnostics(&self, id: usize) -> Vec<Diagnostic> {
        let mut all = self.docs[id].parse.diagnostics.clone();
        if let Some(a) = &self.analysis {
            if let Some(ds) = a.diagnostics.get(id) {
                all.extend(ds.iter().cloned());
            }
        }
        all.sort_by_key(|d| (d.span.start, d.span.end));
        all
    }

    /// The id of the document whose relative path is `path`.
    pub fn id_by_path(&self, path: &str) -> Option<usize> {
        self.docs.iter().position(|d| d.path == path)
    }

    /// An LSP range of a span in document `id`.
    pub fn range(&self, id: usize, span: Span) -> (LineCol, LineCol) {
        let d = &self.docs[id];
        (
            d.position(span.start as usize, self.encoding),
            d.position(span.end as usize, self.encoding),
        )
    }
}

/// `file://` URI of a path.
pub fn file_uri(path: &Path) -> String {
    tower_lsp_server::ls_types::Uri::from_file_path(path)
        .map(|u| u.as_str().to_string())
        .unwrap_or_else(|| format!("file://{}", path.display()))
}

/// The path of a `file://` URI.
pub fn uri_path(uri: &str) -> Option<PathBuf> {
    let parsed: tower_lsp_server::ls_types::Uri = uri.parse().ok()?;
    parsed.to_file_path().map(|p| p.into_owned())
}
