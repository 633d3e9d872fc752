//! File and directory helpers every step shares.
