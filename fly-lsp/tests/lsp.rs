//! The language server in process: JSON-RPC requests into the tower service, responses and
//! published diagnostics out, over a real Nest in a temporary directory.

use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use tower::{Service, ServiceExt};
use tower_lsp_server::jsonrpc::Request;

struct Client {
    service: tower_lsp_server::LspService<fly_lsp::server::Backend>,
    /// Messages from the server, drained concurrently so the server never blocks on them.
    inbox: tokio::sync::mpsc::UnboundedReceiver<Value>,
    next_id: i64,
    dir: tempfile::TempDir,
}

const VARS: &str = "vars {\n  region = \"ru-central1-a\"\n  cpu    = 4\n}\n";
const EGG: &str = "egg \"app\" {\n  type = \"vm\"\n\n  cloud {\n    provider = \"yandex\"\n    region   = \"${vars.region}\"\n  }\n\n  resources {\n    cpu = \"${vars.cpu}\"\n  }\n\n  runner {\n    idle_timeout = \"10m\"\n  }\n\n  gitlab {\n    project_id   = 1\n    token_secret = \"vault://gitlab/token\"\n  }\n}\n";

impl Client {
    async fn start(files: &[(&str, &str)], utf8: bool) -> Client {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let (service, mut socket) = fly_lsp::server::service();
        let (tx, inbox) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(msg) = socket.next().await {
                if tx.send(serde_json::to_value(&msg).unwrap()).is_err() {
                    break;
                }
            }
        });
        let mut c = Client {
            service,
            inbox,
            next_id: 0,
            dir,
        };
        let encodings = if utf8 {
            json!(["utf-8", "utf-16"])
        } else {
            json!(["utf-16"])
        };
        let init = c
            .request(
                "initialize",
                json!({
                    "capabilities": { "general": { "positionEncodings": encodings } },
                    "rootUri": c.uri(""),
                }),
            )
            .await;
        let expected = if utf8 { "utf-8" } else { "utf-16" };
        assert_eq!(init["capabilities"]["positionEncoding"], expected);
        c.notify("initialized", json!({})).await;
        c
    }

    fn uri(&self, name: &str) -> String {
        fly_lsp::world::file_uri(&self.dir.path().join(name))
    }

    async fn call(
        &mut self,
        method: &'static str,
        params: Value,
    ) -> std::result::Result<Value, tower_lsp_server::jsonrpc::Error> {
        self.next_id += 1;
        let req = Request::build(method)
            .params(params)
            .id(self.next_id)
            .finish();
        let resp = self
            .service
            .ready()
            .await
            .unwrap()
            .call(req)
            .await
            .unwrap()
            .expect("a response");
        resp.into_parts().1
    }

    async fn request(&mut self, method: &'static str, params: Value) -> Value {
        self.call(method, params)
            .await
            .unwrap_or_else(|e| panic!("{method} failed: {e:?}"))
    }

    async fn request_err(&mut self, method: &'static str, params: Value) -> String {
        self.call(method, params)
            .await
            .expect_err("an error")
            .message
            .to_string()
    }

    async fn notify(&mut self, method: &'static str, params: Value) {
        let req = Request::build(method).params(params).finish();
        let resp = self.service.ready().await.unwrap().call(req).await.unwrap();
        assert!(resp.is_none());
    }

    /// Published diagnostics until none arrive for a short while: uri → diagnostics.
    async fn diagnostics(&mut self) -> std::collections::BTreeMap<String, Value> {
        let mut out = std::collections::BTreeMap::new();
        while let Ok(Some(v)) =
            tokio::time::timeout(Duration::from_millis(200), self.inbox.recv()).await
        {
            if v["method"] == "textDocument/publishDiagnostics" {
                let uri = v["params"]["uri"].as_str().unwrap().to_string();
                out.insert(uri, v["params"]["diagnostics"].clone());
            }
        }
        out
    }

    async fn open(&mut self, name: &str, text: &str) {
        let uri = self.uri(name);
        self.notify(
            "textDocument/didOpen",
            json!({
                "textDocument": { "uri": uri, "languageId": "fly", "version": 1, "text": text }
            }),
        )
        .await;
    }

    fn pos(&self, name: &str, line: u32, character: u32) -> Value {
        json!({ "textDocument": { "uri": self.uri(name) }, "position": { "line": line, "character": character } })
    }
}

/// The `label` of every element of a JSON array (completion items, inlay hints).
fn labels_of(items: &Value) -> Vec<&str> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect()
}

fn codes(diags: &Value) -> Vec<String> {
    diags
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn indexes_the_nest_and_publishes_diagnostics() {
    let mut c = Client::start(
        &[
            ("vars.fly", VARS),
            ("Eggs/app.fly", EGG),
            ("Eggs/dup.fly", "egg \"app\" {\n  type = \"vm\"\n}\n"),
        ],
        false,
    )
    .await;
    let diags = c.diagnostics().await;
    let dup = &diags[&c.uri("Eggs/dup.fly")];
    assert!(codes(dup).contains(&"F1030".to_string()), "{dup:#}");
    // The duplicate points back at the first definition in the other file.
    let d = dup
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "F1030")
        .unwrap();
    assert_eq!(
        d["relatedInformation"][0]["location"]["uri"],
        c.uri("Eggs/app.fly")
    );
    assert_eq!(
        d["range"],
        json!({"start": {"line": 0, "character": 4}, "end": {"line": 0, "character": 9}})
    );
    // Fixing the duplicate in an open buffer clears the diagnostics of both files.
    c.open("Eggs/dup.fly", "").await;
    let diags = c.diagnostics().await;
    assert_eq!(diags[&c.uri("Eggs/dup.fly")], json!([]));
}

#[tokio::test]
async fn incremental_changes_apply_in_order() {
    let mut c = Client::start(&[("vars.fly", VARS)], false).await;
    c.open("a.fly", "vars {\n  x = 1\n}\n").await;
    c.diagnostics().await;
    let uri = c.uri("a.fly");
    // Version 3 arrives before version 2: it waits for it.
    c.notify("textDocument/didChange", json!({
        "textDocument": { "uri": uri, "version": 3 },
        "contentChanges": [{ "range": {"start": {"line": 1, "character": 2}, "end": {"line": 1, "character": 3}}, "text": "zz" }]
    })).await;
    c.notify("textDocument/didChange", json!({
        "textDocument": { "uri": uri, "version": 2 },
        "contentChanges": [{ "range": {"start": {"line": 1, "character": 6}, "end": {"line": 1, "character": 7}}, "text": "\"é\"" }]
    })).await;
    // A stale version is ignored.
    c.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": uri, "version": 2 },
            "contentChanges": [{ "text": "garbage" }]
        }),
    )
    .await;
    let fmt = c.request("textDocument/formatting", json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 2, "insertSpaces": true } })).await;
    assert_eq!(
        fmt,
        json!([]),
        "the text is `vars {{ zz = \"é\" }}` and already formatted"
    );
    let symbols = c
        .request(
            "textDocument/documentSymbol",
            json!({ "textDocument": { "uri": uri } }),
        )
        .await;
    assert_eq!(symbols[0]["children"][0]["name"], "zz");
}

#[tokio::test]
async fn hover_completion_and_inlay_hints() {
    let mut c = Client::start(&[("vars.fly", VARS), ("Eggs/app.fly", EGG)], false).await;
    c.diagnostics().await;
    let on_cpu = c
        .request("textDocument/hover", c.pos("Eggs/app.fly", 9, 5))
        .await;
    let on_ref = c
        .request("textDocument/hover", c.pos("Eggs/app.fly", 5, 20))
        .await;
    let on_block = c
        .request("textDocument/hover", c.pos("Eggs/app.fly", 3, 3))
        .await;
    let on_duration = c
        .request("textDocument/hover", c.pos("Eggs/app.fly", 13, 22))
        .await;
    insta::assert_json_snapshot!(
        "hover",
        json!({ "cpu": on_cpu, "vars.region": on_ref, "cloud": on_block, "duration": on_duration })
    );

    // Attributes not yet set, in the runner block (after `idle_timeout`).
    let items = c
        .request("textDocument/completion", c.pos("Eggs/app.fly", 14, 0))
        .await;
    let labels = labels_of(&items);
    assert!(
        labels.contains(&"concurrent") && labels.contains(&"tags"),
        "{labels:?}"
    );
    assert!(!labels.contains(&"idle_timeout"), "already set: {labels:?}");
    // Enum values after `type = `.
    c.open("Eggs/app.fly", &EGG.replace("type = \"vm\"", "type = "))
        .await;
    let items = c
        .request("textDocument/completion", c.pos("Eggs/app.fly", 1, 9))
        .await;
    let labels = labels_of(&items);
    assert_eq!(labels, ["\"vm\"", "\"serverless\""]);
    // Variables inside `${vars.`.
    c.open(
        "Eggs/app.fly",
        &EGG.replace("\"${vars.region}\"", "\"${vars."),
    )
    .await;
    let items = c
        .request("textDocument/completion", c.pos("Eggs/app.fly", 5, 24))
        .await;
    let labels = labels_of(&items);
    assert_eq!(labels, ["cpu", "region"]);
    c.open("Eggs/app.fly", EGG).await;
    let hints = c.request("textDocument/inlayHint", json!({ "textDocument": { "uri": c.uri("Eggs/app.fly") }, "range": { "start": {"line": 0, "character": 0}, "end": {"line": 30, "character": 0} } })).await;
    let labels = labels_of(&hints);
    assert_eq!(labels, ["= \"ru-central1-a\"", "= 4", "= 600s"]);
}

#[tokio::test]
async fn definition_references_and_rename_across_files() {
    let mut c = Client::start(&[("vars.fly", VARS), ("Eggs/app.fly", EGG)], false).await;
    c.diagnostics().await;
    let def = c
        .request("textDocument/definition", c.pos("Eggs/app.fly", 5, 22))
        .await;
    assert_eq!(def["uri"], c.uri("vars.fly"));
    assert_eq!(def["range"]["start"], json!({"line": 1, "character": 2}));
    let refs = c.request("textDocument/references", json!({
        "textDocument": { "uri": c.uri("vars.fly") }, "position": {"line": 1, "character": 3}, "context": { "includeDeclaration": true }
    })).await;
    assert_eq!(refs.as_array().unwrap().len(), 2);
    let edit = c.request("textDocument/rename", json!({
        "textDocument": { "uri": c.uri("vars.fly") }, "position": {"line": 1, "character": 3}, "newName": "zone"
    })).await;
    let changes = edit["changes"].as_object().unwrap();
    assert_eq!(changes.len(), 2, "{edit:#}");
    assert_eq!(
        changes[&c.uri("Eggs/app.fly")][0]["range"],
        json!({"start": {"line": 5, "character": 23}, "end": {"line": 5, "character": 29}})
    );
    let err = c.request_err("textDocument/rename", json!({
        "textDocument": { "uri": c.uri("vars.fly") }, "position": {"line": 1, "character": 3}, "newName": "not valid"
    })).await;
    assert!(err.contains("not a valid name"), "{err}");
}

#[tokio::test]
async fn utf8_and_utf16_positions_with_non_ascii_text() {
    let text = "vars {\n  greeting = \"héllo 😀 ${vars.name}\"\n  name = \"x\"\n}\n";
    for utf8 in [false, true] {
        let mut c = Client::start(&[("v.fly", text)], utf8).await;
        c.diagnostics().await;
        // `name` inside the interpolation: byte column 33, UTF-16 column 30.
        let col = if utf8 { 33 } else { 30 };
        let def = c
            .request("textDocument/definition", c.pos("v.fly", 1, col))
            .await;
        assert_eq!(
            def["range"]["start"],
            json!({"line": 2, "character": 2}),
            "utf8={utf8}"
        );
        let refs = c.request("textDocument/references", json!({
            "textDocument": { "uri": c.uri("v.fly") }, "position": {"line": 2, "character": 3}, "context": { "includeDeclaration": false }
        })).await;
        assert_eq!(refs[0]["range"]["start"]["character"], col, "utf8={utf8}");
    }
}

#[tokio::test]
async fn code_actions_and_outline() {
    let bad = "egg \"app\" {\n  tpye = \"vm\"\n}\n";
    let mut c = Client::start(&[("e.fly", bad)], false).await;
    let diags = c.diagnostics().await;
    let d = diags[&c.uri("e.fly")]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "F1002")
        .unwrap()
        .clone();
    let actions = c.request("textDocument/codeAction", json!({
        "textDocument": { "uri": c.uri("e.fly") }, "range": d["range"], "context": { "diagnostics": [d] }
    })).await;
    assert_eq!(actions[0]["title"], "Change to type");
    assert_eq!(
        actions[0]["edit"]["changes"][c.uri("e.fly")][0]["newText"],
        "type"
    );
    let folds = c
        .request(
            "textDocument/foldingRange",
            json!({ "textDocument": { "uri": c.uri("e.fly") } }),
        )
        .await;
    assert_eq!(folds[0]["startLine"], 0);
    let tokens = c
        .request(
            "textDocument/semanticTokens/full",
            json!({ "textDocument": { "uri": c.uri("e.fly") } }),
        )
        .await;
    // egg, "app", tpye, "vm": four tokens of five integers each.
    assert_eq!(tokens["data"].as_array().unwrap().len(), 4 * 5);
    let ws = c
        .request("workspace/symbol", json!({ "query": "ap" }))
        .await;
    assert_eq!(ws[0]["name"], "app");
}

/// Every feature's response on one Nest, as snapshots (the exact JSON an editor receives).
#[tokio::test]
async fn responses_snapshot() {
    let mut c = Client::start(&[("vars.fly", VARS), ("Eggs/app.fly", EGG)], false).await;
    let diagnostics = c.diagnostics().await;
    let app = c.uri("Eggs/app.fly");
    let doc = json!({ "textDocument": { "uri": app } });
    let mut all = serde_json::Map::new();
    all.insert(
        "diagnostics".into(),
        json!(diagnostics.values().collect::<Vec<_>>()),
    );
    all.insert(
        "documentSymbol".into(),
        c.request("textDocument/documentSymbol", doc.clone()).await,
    );
    all.insert(
        "foldingRange".into(),
        c.request("textDocument/foldingRange", doc.clone()).await,
    );
    all.insert(
        "semanticTokens".into(),
        c.request("textDocument/semanticTokens/full", doc.clone())
            .await,
    );
    all.insert(
        "completionInResources".into(),
        c.request("textDocument/completion", c.pos("Eggs/app.fly", 10, 0))
            .await,
    );
    all.insert("inlayHint".into(), c.request("textDocument/inlayHint", json!({ "textDocument": { "uri": app }, "range": { "start": {"line": 0, "character": 0}, "end": {"line": 30, "character": 0} } })).await);
    all.insert(
        "prepareRename".into(),
        c.request("textDocument/prepareRename", c.pos("Eggs/app.fly", 5, 24))
            .await,
    );
    all.insert(
        "workspaceSymbol".into(),
        c.request("workspace/symbol", json!({ "query": "" })).await,
    );
    // Paths in URIs differ per run: keep only the file names.
    let text = serde_json::to_string_pretty(&Value::Object(all)).unwrap();
    let root = fly_lsp::world::file_uri(c.dir.path());
    insta::assert_snapshot!("responses", text.replace(&root, "file://NEST"));
}

/// Rift names: an egg's `rift = "NAME"` goes to the `rift "NAME"` declaration in another
/// file, references and rename cover both, and completion offers the declared names (and
/// time zone names for a scale window's `timezone`).
#[tokio::test]
async fn rift_names_across_files() {
    const RIFT: &str = "rift \"main\" {\n  address = \"https://rift.internal:9443\"\n}\n\nrift \"eu\" {\n  address = \"https://rift-eu.internal\"\n}\n";
    let egg = EGG.replace("  type = \"vm\"\n", "  type = \"vm\"\n  rift = \"main\"\n");
    let mut c = Client::start(
        &[
            ("vars.fly", VARS),
            ("rift.fly", RIFT),
            ("Eggs/app.fly", &egg),
        ],
        false,
    )
    .await;
    let diags = c.diagnostics().await;
    assert!(
        diags.values().all(|d| d.as_array().unwrap().is_empty()),
        "{diags:#?}"
    );
    // `rift = "main"` is on line 2; the name starts at column 10.
    let def = c
        .request("textDocument/definition", c.pos("Eggs/app.fly", 2, 12))
        .await;
    assert_eq!(def["uri"], c.uri("rift.fly"));
    assert_eq!(
        def["range"],
        json!({"start": {"line": 0, "character": 6}, "end": {"line": 0, "character": 10}})
    );
    let refs = c.request("textDocument/references", json!({
        "textDocument": { "uri": c.uri("rift.fly") }, "position": {"line": 0, "character": 7}, "context": { "includeDeclaration": false }
    })).await;
    assert_eq!(refs.as_array().unwrap().len(), 1, "{refs:#}");
    assert_eq!(refs[0]["uri"], c.uri("Eggs/app.fly"));
    let edit = c.request("textDocument/rename", json!({
        "textDocument": { "uri": c.uri("Eggs/app.fly") }, "position": {"line": 2, "character": 11}, "newName": "cache"
    })).await;
    let changes = edit["changes"].as_object().unwrap();
    assert_eq!(changes.len(), 2, "{edit:#}");
    assert_eq!(
        changes[&c.uri("Eggs/app.fly")][0]["range"],
        json!({"start": {"line": 2, "character": 10}, "end": {"line": 2, "character": 14}})
    );
    assert_eq!(changes[&c.uri("rift.fly")][0]["newText"], "cache");

    // Completion of the declared names after `rift = `, inside the quotes too.
    c.open("Eggs/app.fly", &egg.replace("rift = \"main\"", "rift = "))
        .await;
    let items = c
        .request("textDocument/completion", c.pos("Eggs/app.fly", 2, 9))
        .await;
    assert_eq!(labels_of(&items), ["\"eu\"", "\"main\""]);
    c.open("Eggs/app.fly", &egg.replace("rift = \"main\"", "rift = \""))
        .await;
    let items = c
        .request("textDocument/completion", c.pos("Eggs/app.fly", 2, 10))
        .await;
    assert_eq!(labels_of(&items), ["eu", "main"]);

    // Time zones in a scale window.
    c.open(
        "UF/uf.fly",
        "uglyfox {\n  apex {\n    scale \"w\" {\n      timezone = \"\n    }\n  }\n}\n",
    )
    .await;
    let items = c
        .request("textDocument/completion", c.pos("UF/uf.fly", 3, 18))
        .await;
    let labels = labels_of(&items);
    assert!(
        labels.contains(&"Europe/Moscow") && labels.contains(&"UTC"),
        "{} items",
        labels.len()
    );
}
