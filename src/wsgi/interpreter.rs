//! Embedded CPython start-up: `PyConfig`, virtualenv activation, loading the app.
//!
//! Runs once per worker, after exec (DESIGN §8). A virtualenv is activated the
//! way its own `bin/python` would be: the interpreter's `program_name` and
//! `executable` point at the venv's python, so CPython's path calculation finds
//! `pyvenv.cfg` and sets `sys.prefix` to the venv. PYTHONHOME is never touched.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use pyo3::ffi;

/// What the interpreter needs to know before it starts.
pub struct PythonSetup<'a> {
    pub virtualenv: Option<&'a Path>,
    /// Prepended to `sys.path`, in order (`pythonpath`, then the working directory).
    pub search_path: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("virtualenv {path}: {reason}")]
    Virtualenv { path: String, reason: String },
    #[error("cannot initialise Python: {0}")]
    Init(String),
    #[error("the WSGI app could not be loaded (traceback above)")]
    App,
}

/// The embedded interpreter's version, e.g. "3.11.7". Safe before initialisation.
pub fn embedded_version() -> String {
    // SAFETY: Py_GetVersion returns a pointer to a static NUL-terminated string
    // and may be called before Py_Initialize.
    let full = unsafe { CStr::from_ptr(ffi::Py_GetVersion()) };
    let full = full.to_string_lossy();
    full.split_whitespace().next().unwrap_or("").to_string()
}

fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts.next()?.trim().parse().ok()?;
    Some((major, minor))
}

/// Checks that `venv` is a virtualenv made by the embedded Python's minor
/// version, and returns the path of its python executable.
pub fn check_virtualenv(venv: &Path) -> Result<PathBuf, BootError> {
    let fail = |reason: String| BootError::Virtualenv {
        path: venv.display().to_string(),
        reason,
    };
    let cfg_path = venv.join("pyvenv.cfg");
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| fail(format!("cannot read {}: {e}", cfg_path.display())))?;
    let mut venv_version = None;
    for line in text.lines() {
        if let Some((key, value)) = line.split_once('=') {
            let key = key.trim_matches(|c: char| c == ' ' || c == '\t');
            if key == "version" || key == "version_info" {
                venv_version = Some(
                    value
                        .trim_matches(|c: char| c == ' ' || c == '\t')
                        .to_string(),
                );
            }
        }
    }
    let embedded = embedded_version();
    let venv_version =
        venv_version.ok_or_else(|| fail(format!("{} has no version line", cfg_path.display())))?;
    if major_minor(&venv_version) != major_minor(&embedded) {
        return Err(fail(format!(
            "it was made by Python {venv_version}, but capataz embeds Python {embedded}; \
             recreate it with that interpreter (python{} -m venv)",
            embedded
                .rsplit_once('.')
                .map(|(mm, _)| mm)
                .unwrap_or(&embedded)
        )));
    }
    let python = venv.join("bin").join("python");
    if !python.exists() {
        return Err(fail(format!("{} does not exist", python.display())));
    }
    Ok(python)
}

fn status_error(status: &ffi::PyStatus) -> Option<String> {
    // SAFETY: PyStatus_Exception only reads the struct.
    if unsafe { ffi::PyStatus_Exception(*status) } == 0 {
        return None;
    }
    let msg = if status.err_msg.is_null() {
        "unknown error".to_string()
    } else {
        // SAFETY: err_msg is a static C string set by CPython.
        unsafe { CStr::from_ptr(status.err_msg) }
            .to_string_lossy()
            .into_owned()
    };
    Some(msg)
}

fn cpath(p: &Path) -> Result<CString, BootError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| BootError::Init(format!("path contains NUL: {}", p.display())))
}

/// Initialises CPython. On return the calling thread holds the GIL.
pub fn initialize(setup: &PythonSetup<'_>) -> Result<(), BootError> {
    let python_exe = match setup.virtualenv {
        Some(venv) => Some(check_virtualenv(venv)?),
        None => None,
    };
    let search: Vec<u8> = setup
        .search_path
        .iter()
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .collect::<Vec<_>>()
        .join(&b':');
    let search =
        CString::new(search).map_err(|_| BootError::Init("pythonpath contains NUL".into()))?;

    let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::uninit();
    // SAFETY: PyConfig_InitPythonConfig fully initialises the struct; every
    // later call gets a pointer to it, and PyConfig_Clear frees what it owns.
    unsafe {
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let config = &mut *config.as_mut_ptr();
        config.install_signal_handlers = 0; // the worker owns its signals
        config.parse_argv = 0;
        config.buffered_stdio = 0; // print() reaches the log at once
        let result = (|| {
            let argv0 = c"capataz";
            let mut argv = [argv0.as_ptr()];
            let st = ffi::PyConfig_SetBytesArgv(config, 1, argv.as_mut_ptr());
            if let Some(e) = status_error(&st) {
                return Err(BootError::Init(e));
            }
            if let Some(exe) = &python_exe {
                let exe = cpath(exe)?;
                let st =
                    ffi::PyConfig_SetBytesString(config, &mut config.program_name, exe.as_ptr());
                if let Some(e) = status_error(&st) {
                    return Err(BootError::Init(e));
                }
                let st = ffi::PyConfig_SetBytesString(config, &mut config.executable, exe.as_ptr());
                if let Some(e) = status_error(&st) {
                    return Err(BootError::Init(e));
                }
            }
            if !search.as_bytes().is_empty() {
                let st = ffi::PyConfig_SetBytesString(
                    config,
                    &mut config.pythonpath_env,
                    search.as_ptr(),
                );
                if let Some(e) = status_error(&st) {
                    return Err(BootError::Init(e));
                }
            }
            let st = ffi::Py_InitializeFromConfig(config);
            if let Some(e) = status_error(&st) {
                return Err(BootError::Init(e));
            }
            Ok(())
        })();
        ffi::PyConfig_Clear(config);
        result
    }
}
