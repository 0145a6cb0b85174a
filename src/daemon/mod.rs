//! The scheduler daemon (placeholder doc, replaced below).
pub mod engine;
