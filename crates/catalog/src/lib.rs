//! opsflow catalog (in progress).
