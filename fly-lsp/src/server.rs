//! The Language Server Protocol front: tower-lsp-server handlers that lock the
//! [`World`], call a feature function and convert. A panic in a feature becomes an error
//! response for that request; the server keeps running.

use crate::features::{
    self, actions, completion, diagnostics, hints, hover, navigation, semantic, symbols,
};
use crate::world::{uri_path, Change, World};
use fly_syntax::Encoding;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer, LspService, Server};

/// Diagnostics to publish: document, diagnostics, buffer version.
type Publish = (Uri, Vec<Diagnostic>, Option<i32>);

/// The Fly language server.
pub struct Backend {
    client: Client,
    world: Mutex<World>,
    published: Mutex<HashMap<String, Vec<Diagnostic>>>,
}

impl Backend {
    /// A server talking to `client`.
    pub fn new(client: Client) -> Self {
        Backend {
            client,
            world: Mutex::new(World::new(None, Encoding::Utf16)),
            published: Mutex::new(HashMap::new()),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        // A panic while the lock was held leaves a consistent World (every mutation
        // replaces whole values), so a poisoned lock is still usable.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a query against the world, turning a panic into an error response.
    fn query<T>(&self, uri: &Uri, f: impl FnOnce(&World, usize) -> T) -> Result<Option<T>> {
        let world = self.world();
        let Some(id) = world.id(uri.as_str()) else {
            return Ok(None);
        };
        catch_unwind(AssertUnwindSafe(|| f(&world, id)))
            .map(Some)
            .map_err(|_| Error::internal_error())
    }

    /// Re-checks the Nest and publishes the diagnostics that changed.
    async fn refresh(&self) {
        let updates: Option<Vec<Publish>> = {
            let mut world = self.world();
            let ok = catch_unwind(AssertUnwindSafe(|| world.reanalyze())).is_ok();
            if !ok {
                None
            } else {
                let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
                let mut out = Vec::new();
                for id in 0..world.docs.len() {
                    let diags = catch_unwind(AssertUnwindSafe(|| diagnostics::of(&world, id)))
                        .unwrap_or_default();
                    let doc = &world.docs[id];
                    if published.get(&doc.uri) == Some(&diags) {
                        continue;
                    }
                    published.insert(doc.uri.clone(), diags.clone());
                    if let Ok(uri) = doc.uri.parse() {
                        out.push((uri, diags, doc.version));
                    }
                }
                Some(out)
            }
        };
        let Some(updates) = updates else {
            self.client
                .log_message(
                    MessageType::ERROR,
                    "fly: checking the Nest failed (internal error); diagnostics are stale",
                )
                .await;
            return;
        };
        for (uri, diags, version) in updates {
            self.client.publish_diagnostics(uri, diags, version).await;
        }
    }
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let utf8 = params
            .capabilities
            .general
            .as_ref()
            .and_then(|g| g.position_encodings.as_ref())
            .is_some_and(|encs| encs.contains(&PositionEncodingKind::UTF8));
        #[allow(deprecated)]
        let root = params
            .workspace_folders
            .as_ref()
            .and_then(|f| f.first())
            .map(|f| f.uri.clone())
            .or(params.root_uri.clone())
            .and_then(|u| uri_path(u.as_str()));
        let indexed = {
            let mut world = self.world();
            *world = World::new(
                root,
                if utf8 {
                    Encoding::Utf8
                } else {
                    Encoding::Utf16
                },
            );
            world.index_root()
        };
        if let Err(e) = indexed {
            // The open buffers still work; say why the rest of the Nest is missing.
            self.client
                .log_message(MessageType::WARNING, format!("fly: {e}"))
                .await;
        }
        Ok(InitializeResult {
            server_info: Some(ServerInfo {
                name: "fly".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            capabilities: ServerCapabilities {
                position_encoding: Some(if utf8 {
                    PositionEncodingKind::UTF8
                } else {
                    PositionEncodingKind::UTF16
                }),
                text_document_sync: Some(TextDocumentSyncCapability::Kind(
                    TextDocumentSyncKind::INCREMENTAL,
                )),
                hover_provider: Some(HoverProviderCapability::Simple(true)),
                completion_provider: Some(CompletionOptions {
                    trigger_characters: Some(vec![
                        ".".into(),
                        "{".into(),
                        "\"".into(),
                        "'".into(),
                        " ".into(),
                    ]),
                    ..Default::default()
                }),
                definition_provider: Some(OneOf::Left(true)),
                references_provider: Some(OneOf::Left(true)),
                rename_provider: Some(OneOf::Right(RenameOptions {
                    prepare_provider: Some(true),
                    work_done_progress_options: Default::default(),
                })),
                document_symbol_provider: Some(OneOf::Left(true)),
                workspace_symbol_provider: Some(OneOf::Left(true)),
                folding_range_provider: Some(FoldingRangeProviderCapability::Simple(true)),
                semantic_tokens_provider: Some(
                    SemanticTokensServerCapabilities::SemanticTokensOptions(
                        SemanticTokensOptions {
                            legend: semantic::legend(),
                            full: Some(SemanticTokensFullOptions::Bool(true)),
                            range: None,
                            work_done_progress_options: Default::default(),
                        },
                    ),
                ),
                document_formatting_provider: Some(OneOf::Left(true)),
                code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
                inlay_hint_provider: Some(OneOf::Left(true)),
                ..Default::default()
            },
            offset_encoding: None,
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        self.refresh().await;
    }

    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let d = params.text_document;
        self.world().open(d.uri.as_str(), d.text, d.version);
        self.refresh().await;
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let changes = params
            .content_changes
            .into_iter()
            .map(|c| Change {
                range: c
                    .range
                    .map(|r| (r.start.line, r.start.character, r.end.line, r.end.character)),
                text: c.text,
            })
            .collect();
        let changed = self.world().change(
            params.text_document.uri.as_str(),
            params.text_document.version,
            changes,
        );
        if changed {
            self.refresh().await;
        }
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        self.world().close(params.text_document.uri.as_str());
        self.refresh().await;
    }

    async fn did_change_watched_files(&self, params: DidChangeWatchedFilesParams) {
        {
            let mut world = self.world();
            for c in params.changes {
                if c.uri.as_str().ends_with(".fly") {
                    world.disk_changed(c.uri.as_str(), c.typ == FileChangeType::DELETED);
                }
            }
        }
        self.refresh().await;
    }

    async fn hover(&self, params: HoverParams) -> Result<Option<Hover>> {
        let p = params.text_document_position_params;
        Ok(self
            .query(&p.text_document.uri, |w, id| {
                hover::hover(w, id, p.position)
            })?
            .flatten())
    }

    async fn completion(&self, params: CompletionParams) -> Result<Option<CompletionResponse>> {
        let p = params.text_document_position;
        let items = self.query(&p.text_document.uri, |w, id| {
            completion::complete(w, id, p.position)
        })?;
        Ok(items.map(CompletionResponse::Array))
    }

    async fn goto_definition(
        &self,
        params: GotoDefinitionParams,
    ) -> Result<Option<GotoDefinitionResponse>> {
        let p = params.text_document_position_params;
        let loc = self.query(&p.text_document.uri, |w, id| {
            navigation::definition(w, id, p.position)
        })?;
        Ok(loc.flatten().map(GotoDefinitionResponse::Scalar))
    }

    async fn references(&self, params: ReferenceParams) -> Result<Option<Vec<Location>>> {
        let p = params.text_document_position;
        let include = params.context.include_declaration;
        self.query(&p.text_document.uri, |w, id| {
            navigation::references(w, id, p.position, include)
        })
    }

    async fn prepare_rename(
        &self,
        params: TextDocumentPositionParams,
    ) -> Result<Option<PrepareRenameResponse>> {
        let r = self.query(&params.text_document.uri, |w, id| {
            navigation::prepare_rename(w, id, params.position)
        })?;
        Ok(r.flatten().map(PrepareRenameResponse::Range))
    }

    async fn rename(&self, params: RenameParams) -> Result<Option<WorkspaceEdit>> {
        let p = params.text_document_position;
        let result = self.query(&p.text_document.uri, |w, id| {
            navigation::rename(w, id, p.position, &params.new_name)
        })?;
        match result {
            None => Ok(None),
            Some(Ok(edit)) => Ok(Some(edit)),
            Some(Err(navigation::RenameError::NothingHere)) => Ok(None),
            Some(Err(navigation::RenameError::InvalidName(n))) => Err(Error::invalid_params(
                format!("`{n}` is not a valid name here"),
            )),
        }
    }

    async fn document_symbol(
        &self,
        params: DocumentSymbolParams,
    ) -> Result<Option<DocumentSymbolResponse>> {
        let s = self.query(&params.text_document.uri, symbols::document)?;
        Ok(s.map(DocumentSymbolResponse::Nested))
    }

    async fn symbol(
        &self,
        params: WorkspaceSymbolParams,
    ) -> Result<Option<WorkspaceSymbolResponse>> {
        let world = self.world();
        let found = catch_unwind(AssertUnwindSafe(|| {
            symbols::workspace(&world, &params.query)
        }))
        .map_err(|_| Error::internal_error())?;
        Ok(Some(WorkspaceSymbolResponse::Flat(found)))
    }

    async fn folding_range(&self, params: FoldingRangeParams) -> Result<Option<Vec<FoldingRange>>> {
        self.query(&params.text_document.uri, symbols::folding)
    }

    async fn semantic_tokens_full(
        &self,
        params: SemanticTokensParams,
    ) -> Result<Option<SemanticTokensResult>> {
        let data = self.query(&params.text_document.uri, semantic::tokens)?;
        Ok(data.map(|data| {
            SemanticTokensResult::Tokens(SemanticTokens {
                result_id: None,
                data,
            })
        }))
    }

    async fn formatting(&self, params: DocumentFormattingParams) -> Result<Option<Vec<TextEdit>>> {
        // Copy the buffer and let go of the lock: formatting never waits on analysis.
        let snapshot = {
            let world = self.world();
            world
                .doc(params.text_document.uri.as_str())
                .map(|d| (d.text.clone(), d.index.clone(), world.encoding))
        };
        let Some((text, index, enc)) = snapshot else {
            return Ok(None);
        };
        catch_unwind(AssertUnwindSafe(|| {
            features::formatting::format(&text, &index, enc)
        }))
        .map_err(|_| Error::internal_error())
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        let uri = params.text_document.uri.clone();
        let fixes = self.query(&params.text_document.uri, |w, id| {
            actions::quick_fixes(w, id, &uri, &params.context.diagnostics)
        })?;
        Ok(fixes.map(|f| f.into_iter().map(CodeActionOrCommand::CodeAction).collect()))
    }

    async fn inlay_hint(&self, params: InlayHintParams) -> Result<Option<Vec<InlayHint>>> {
        let (first, last) = (params.range.start.line, params.range.end.line);
        self.query(&params.text_document.uri, |w, id| {
            hints::hints(w, id, first, last)
        })
    }
}

/// Serves the language server on standard input and output until the client exits.
pub fn run_stdio() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (service, socket) = LspService::new(Backend::new);
        Server::new(tokio::io::stdin(), tokio::io::stdout(), socket)
            .serve(service)
            .await;
    });
    Ok(())
}

/// The service for in-process use (tests, benchmarks).
pub fn service() -> (LspService<Backend>, tower_lsp_server::ClientSocket) {
    LspService::new(Backend::new)
}
