//! opsflow views (in progress).
