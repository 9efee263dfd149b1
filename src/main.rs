//! capataz: a production application server for Python WSGI apps.
//!
//! One binary, two roles (DESIGN §1):
//! - the master ([`master`]): config, listeners, supervision; never runs Python;
//! - the worker ([`worker`], started as `capataz __worker__ N`): serves HTTP
//!   and runs the app through [`wsgi`], the only module that touches CPython.
//!
//! Other components: [`config`] (the option table and its three sources),
//! [`logging`] (server log and access log), [`static_files`] (`static-map`,
//! served by the worker's I/O side without Python) and [`stats`] (uWSGI stats
//! JSON, Prometheus metrics, health).

mod config;
mod control;
mod logging;
mod master;
mod programs;
mod static_files;
mod stats;
mod worker;
mod wsgi;

use std::ffi::OsString;

use config::Command;

/// `--version`: ours, and the embedded interpreter's version and prefix.
fn print_version() -> i32 {
    use pyo3::prelude::*;
    println!("capataz {}", env!("CARGO_PKG_VERSION"));
    let setup = wsgi::interpreter::PythonSetup {
        virtualenv: None,
        search_path: Vec::new(),
    };
    if let Err(e) = wsgi::interpreter::initialize(&setup) {
        println!(
            "Python {} (cannot initialise: {e})",
            wsgi::interpreter::embedded_version()
        );
        return 1;
    }
    Python::attach(|py| {
        let sys = py.import("sys").ok();
        let prefix: String = sys
            .and_then(|s| s.getattr("prefix").ok())
            .and_then(|p| p.extract().ok())
            .unwrap_or_default();
        println!(
            "Python {} (prefix: {prefix})",
            wsgi::interpreter::embedded_version()
        );
    });
    0
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "__worker__") {
        worker::run();
    }
    if args.get(1).is_some_and(|a| a == "ctl") {
        let rest = args
            .iter()
            .skip(2)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        std::process::exit(control::client::run(rest));
    }
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let code = match config::load(args.into_iter().skip(1).collect(), env) {
        Ok(Command::Help(text)) => {
            print!("{text}");
            0
        }
        Ok(Command::Version) => print_version(),
        Ok(Command::PrintConfig(text)) => {
            print!("{text}");
            0
        }
        Ok(Command::Serve(cfg)) => master::run(*cfg),
        Err(e) => {
            eprintln!("capataz: config error: {e}");
            config::EXIT_USAGE
        }
    };
    std::process::exit(code);
}
