//! Helpers shared by the gosling integration tests.

/// The IR of a Nest that must compile; panics with every diagnostic otherwise.
pub fn ir_of(files: Vec<fly_types::SourceFile>) -> fly_ir::Deployment {
    let c = fly_types::compile(files, &fly_types::Env::default());
    let d: Vec<String> = c
        .diagnostics()
        .map(|(p, d)| format!("{p}: {}", d.message))
        .collect();
    c.ir.unwrap_or_else(|| panic!("{d:?}"))
}
