//! Embeds an rpath to the build Python's LIBDIR, so the binary loads the same
//! libpython it was built against (DESIGN §8) rather than the system's.
//!
//! On x86_64-unknown-linux-gnu, where rustc links with its own lld, it also
//! shapes the binary for worker RSS (a worker is a fresh exec, so every page
//! of the binary it touches counts):
//! - `-z pack-relative-relocs` stores the PIE's relative relocations as
//!   DT_RELR (3 KiB instead of 234 KiB that the loader reads at every start);
//! - `--symbol-ordering-file=link/capataz.order` puts the functions a worker
//!   runs next to each other (scripts/symbol_order.py writes the file).
use std::path::Path;
use std::process::Command;

fn main() {
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".to_string());
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    let out = Command::new(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')",
        ])
        .output()
        .expect("build.rs: cannot run python3 to find its LIBDIR");
    let libdir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !libdir.is_empty() {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{libdir}");
        // benches/environ.rs embeds the interpreter too.
        println!("cargo:rustc-link-arg-benches=-Wl,-rpath,{libdir}");
        println!("cargo:rustc-env=CAPATAZ_PYTHON_LIBDIR={libdir}");
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    if target == "x86_64-unknown-linux-gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        let order = Path::new(&manifest).join("link").join("capataz.order");
        println!("cargo:rerun-if-changed={}", order.display());
        if order.is_file() {
            println!(
                "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={},--no-warn-symbol-ordering",
                order.display()
            );
        }
    }
}
