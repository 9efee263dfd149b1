//! Embeds an rpath to the build Python's LIBDIR, so the binary loads the same
//! libpython it was built against (DESIGN §8) rather than the system's.
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
}
