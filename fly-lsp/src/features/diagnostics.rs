//! Diagnostics in LSP form.

use super::range;
use crate::world::World;
use fly_syntax::Severity;
use tower_lsp_server::ls_types::{
    self as lsp, DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString,
};

/// The LSP diagnostics of document `id`.
pub fn of(world: &World, id: usize) -> Vec<lsp::Diagnostic> {
    world
        .diagnostics(id)
        .into_iter()
        .map(|d| {
            let related: Vec<DiagnosticRelatedInformation> = d
                .secondary
                .iter()
                .filter_map(|l| {
                    let target = match &l.file {
                        Some(path) => world.id_by_path(path)?,
                        None => id,
                    };
                    Some(DiagnosticRelatedInformation {
                        location: Location {
                            uri: world.docs[target].uri.parse().ok()?,
                            range: range(world, target, l.span),
                        },
                        message: l.message.clone(),
                    })
                })
                .collect();
            let mut message = d.message.clone();
            if let Some(help) = &d.help {
                message.push_str("\nhelp: ");
                message.push_str(help);
            }
            lsp::Diagnostic {
                range: range(world, id, d.span),
                severity: Some(match d.severity {
                    Severity::Error => DiagnosticSeverity::ERROR,
                    Severity::Warning => DiagnosticSeverity::WARNING,
                    Severity::Note => DiagnosticSeverity::INFORMATION,
                }),
                code: Some(NumberOrString::String(d.code.0.to_string())),
                source: Some("fly".into()),
                message,
                related_information: (!related.is_empty()).then_some(related),
                data: d
                    .help
                    .as_ref()
                    .map(|h| serde_json::Value::String(h.clone())),
                ..Default::default()
            }
        })
        .collect()
}
