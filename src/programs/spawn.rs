//! Starting one `[program:x]` process: expand its templates, split the
//! command shell-like (no shell runs), and fork+exec it in its own session
//! (so `stopasgroup` can signal the group), dying with the master
//! (PR_SET_PDEATHSIG), with the shared sockets' descriptors left open.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::config::sections::{expand_template, LogTarget, ProgramConfig};

/// The names a program's templates may use, for process `num`.
pub fn template_lookup<'a>(
    program: &'a ProgramConfig,
    num: usize,
) -> impl Fn(&str) -> Option<String> + 'a {
    move |key: &str| match key {
        "program_name" | "group_name" => Some(program.name.clone()),
        "process_num" => Some(num.to_string()),
        "numprocs" => Some(program.numprocs.to_string()),
        "here" => Some(program.here.display().to_string()),
        other => other
            .strip_prefix("ENV_")
            .and_then(|var| std::env::var(var).ok()),
    }
}

/// The argv for process `num`: templates expanded, sockets substituted,
/// split shell-like.
pub fn argv(
    program: &ProgramConfig,
    num: usize,
    sockets: &[(String, RawFd)],
) -> Result<Vec<String>, String> {
    let mut command = expand_template(&program.command, &template_lookup(program, num))?;
    for (name, fd) in sockets {
        command = command.replace(&format!("$(capataz.sockets.{name})"), &fd.to_string());
    }
    if let Some(name) = crate::config::sections::socket_references(&command).first() {
        return Err(format!("[socket:{name}] is not bound"));
    }
    let argv = shlex::split(&command).ok_or("unbalanced quotes in 'command'")?;
    if argv.is_empty() {
        return Err("empty 'command'".into());
    }
    Ok(argv)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array for pipe2.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A started process and the read ends of its captured output.
pub struct Started {
    pub pid: i32,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Starts process `num` of `program`. `env` is added to the master's own
/// environment (capataz's `env` and `env-file`), then the program's
/// `environment`.
pub fn spawn(
    program: &ProgramConfig,
    num: usize,
    process_name: &str,
    env: &[(String, String)],
    sockets: &[(String, RawFd)],
) -> io::Result<Started> {
    let argv = argv(program, num, sockets).map_err(io::Error::other)?;
    let lookup = template_lookup(program, num);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for (k, v) in &program.environment {
        cmd.env(k, expand_template(v, &lookup).map_err(io::Error::other)?);
    }
    // supervisord's SUPERVISOR_PROCESS_NAME, under our name.
    cmd.env("CAPATAZ_PROCESS_NAME", process_name);
    cmd.env("CAPATAZ_GROUP_NAME", &program.name);
    let directory = match &program.directory {
        Some(dir) => Some(expand_template(dir, &lookup).map_err(io::Error::other)?),
        None => None,
    };
    if let Some(dir) = &directory {
        cmd.current_dir(dir);
    }
    if let Some(user) = &program.user {
        let (uid, gid) = crate::master::privileges::lookup_user(user).map_err(io::Error::other)?;
        cmd.uid(uid).gid(gid);
    }
    cmd.stdin(Stdio::null());
    let (mut out_read, mut err_read) = (None, None);
    if program.stdout == LogTarget::Discard {
        cmd.stdout(Stdio::null());
        if program.redirect_stderr {
            cmd.stderr(Stdio::null());
        }
    } else {
        let (r, w) = pipe()?;
        if program.redirect_stderr {
            cmd.stderr(Stdio::from(w.try_clone()?));
        }
        cmd.stdout(Stdio::from(w));
        out_read = Some(r);
    }
    if !program.redirect_stderr {
        if program.stderr == LogTarget::Discard {
            cmd.stderr(Stdio::null());
        } else {
            let (r, w) = pipe()?;
            cmd.stderr(Stdio::from(w));
            err_read = Some(r);
        }
    }
    // Only the sockets its command names: a program holding another
    // program's socket would keep it listening after `update` closed it,
    // and block binding its replacement.
    let named = crate::config::sections::socket_references(&program.command);
    let inherit: Vec<RawFd> = sockets
        .iter()
        .filter(|(name, _)| named.iter().any(|n| n == name))
        .map(|(_, fd)| *fd)
        .collect();
    let umask = program.umask;
    // SAFETY: getpid has no preconditions.
    let master = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and makes only
    // async-signal-safe calls (setsid, prctl, getppid, umask, fcntl).
    // std applies uid/gid before it, so PDEATHSIG (cleared by a uid change)
    // is set afterwards.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != master {
                // The master died before PDEATHSIG was armed.
                libc::_exit(1);
            }
            if let Some(mask) = umask {
                libc::umask(mask as libc::mode_t);
            }
            for &fd in &inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        // exec and chdir failures both come back as a bare errno; name
        // what was missing, or the log says only "No such file or directory".
        let what = match &directory {
            Some(dir) if !std::path::Path::new(dir).is_dir() => format!("directory '{dir}'"),
            _ => format!("command '{}'", argv[0]),
        };
        io::Error::new(e.kind(), format!("{what}: {e}"))
    })?;
    drop(cmd); // closes our copies of the pipes' write ends
    Ok(Started {
        pid: child.id() as i32,
        stdout: out_read,
        stderr: err_read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(command: &str) -> ProgramConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ini");
        std::fs::write(
            &path,
            format!("[program:web]\ncommand = {command}\n[socket:s]\nport = 1\n"),
        )
        .unwrap();
        let (mut p, _) = crate::config::sections::load(&[path]).unwrap();
        p.remove(0)
    }

    #[test]
    fn a_missing_command_or_directory_is_named() {
        let p = program("/nonexistent/capataz-no-such-cmd --flag");
        let e = spawn(&p, 0, "web", &[], &[]).err().unwrap().to_string();
        assert!(
            e.starts_with("command '/nonexistent/capataz-no-such-cmd': No such file"),
            "{e}"
        );
        let mut p = program("true");
        p.directory = Some("/nonexistent/capataz-dir".into());
        let e = spawn(&p, 0, "web", &[], &[]).err().unwrap().to_string();
        assert!(
            e.starts_with("directory '/nonexistent/capataz-dir': No such file"),
            "{e}"
        );
    }

    #[test]
    fn argv_expands_templates_and_sockets_without_a_shell() {
        let p = program(
            r#"srv --fd $(capataz.sockets.s) --name "%(program_name)s %(process_num)02d" ; rm -rf /"#,
        );
        let argv = argv(&p, 3, &[("s".into(), 7)]).unwrap();
        assert_eq!(
            argv,
            vec!["srv", "--fd", "7", "--name", "web 03", ";", "rm", "-rf", "/"]
        );
    }

    #[test]
    fn unbalanced_quotes_are_an_error() {
        let p = program(r#"srv "open"#);
        assert!(argv(&p, 0, &[]).is_err());
    }

    #[test]
    fn a_socket_that_is_not_bound_is_an_error() {
        let p = program("srv --fd $(capataz.sockets.s)");
        assert_eq!(argv(&p, 0, &[]).unwrap_err(), "[socket:s] is not bound");
    }
}
