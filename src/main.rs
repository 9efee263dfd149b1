//! capataz: one binary, two roles (master and worker). See DESIGN.md §1.
mod config;

fn main() {}
