//! Placeholder so the workspace parses while the planner bench is being written.
fn main() {}
