//! Benchmark drivers shared by the kmem benches (filled in by the bench suite).
