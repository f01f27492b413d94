//! The bubblewrap sandbox for local instances.
//!
//! Each server runs in its own mount, PID, IPC and UTS namespaces (and
//! network, with `network = "none"`), sees the system read-only, gets a
//! private /tmp and its own data dir as the only writable place, and sees
//! nothing of Hangar's data dir (the database, sockets and every other
//! instance live there and are covered by an empty tmpfs).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::{InstanceSpec, Network};

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    /// Sandbox when bubblewrap works; otherwise warn and run unsandboxed.
    #[default]
    Auto,
    /// Refuse to start instances without a working sandbox.
    Required,
    /// Never sandbox (trusted servers only).
    Off,
}

/// The sandbox as found on this machine.
#[derive(Debug, Clone)]
pub struct Sandbox {
    mode: SandboxMode,
    bwrap: Option<PathBuf>,
    /// Why bubblewrap is unusable, when it is.
    problem: Option<String>,
    /// Directories no instance may see (Hangar's data dir).
    hidden: Vec<PathBuf>,
}

impl Sandbox {
    /// Looks for a working `bwrap` (it must be able to create namespaces here).
    pub fn detect(mode: SandboxMode, hidden: Vec<PathBuf>) -> Sandbox {
        if mode == SandboxMode::Off {
            return Sandbox {
                mode,
                bwrap: None,
                problem: Some("sandbox = \"off\"".into()),
                hidden,
            };
        }
        let Some(bwrap) = find_on_path("bwrap") else {
            return Sandbox {
                mode,
                bwrap: None,
                problem: Some("bubblewrap (bwrap) is not installed".into()),
                hidden,
            };
        };
        let probe = std::process::Command::new(&bwrap)
            .args([
                "--ro-bind",
                "/",
                "/",
                "--unshare-pid",
                "--unshare-ipc",
                "--unshare-uts",
                "--",
                "true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match probe {
            Ok(out) if out.status.success() => Sandbox {
                mode,
                bwrap: Some(bwrap),
                problem: None,
                hidden,
            },
            Ok(out) => Sandbox {
                mode,
                bwrap: None,
                problem: Some(format!(
                    "bwrap cannot create namespaces here: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                hidden,
            },
            Err(e) => Sandbox {
                mode,
                bwrap: None,
                problem: Some(format!("bwrap failed to run: {e}")),
                hidden,
            },
        }
    }

    pub fn mode(&self) -> SandboxMode {
        self.mode
    }

    /// True when instances will run sandboxed.
    pub fn active(&self) -> bool {
        self.bwrap.is_some()
    }

    /// Why instances are not sandboxed, if they are not.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// The command that runs `spec`'s server inside the sandbox (or as is).
    pub fn wrap_command(&self, spec: &InstanceSpec) -> Vec<String> {
        let Some(bwrap) = &self.bwrap else {
            return spec.command.clone();
        };
        let data = spec.data_dir.display().to_string();
        let mut cmd: Vec<String> = vec![bwrap.display().to_string()];
        let mut push = |args: &[&str]| cmd.extend(args.iter().map(|a| a.to_string()));
        push(&[
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
        ]);
        // The private /tmp would hide a server that lives under /tmp (a
        // checkout or build there): show those trees again, read-only.
        for root in tmp_roots(&spec.command) {
            push(&["--ro-bind", &root, &root]);
        }
        // Hidden last, so nothing bound above can show Hangar's data again.
        for hidden in &self.hidden {
            push(&["--tmpfs", &hidden.display().to_string()]);
        }
        push(&["--bind", &data, &data]);
        push(&["--unshare-pid", "--unshare-ipc", "--unshare-uts"]);
        if spec.network == Network::None {
            push(&["--unshare-net"]);
        }
        push(&[
            "--die-with-parent",
            "--new-session",
            "--setenv",
            "HOME",
            &data,
            "--chdir",
            &data,
            "--",
        ]);
        cmd.extend(spec.command.iter().cloned());
        cmd
    }
}

/// The top-level `/tmp/<name>` trees that absolute paths in `command` live in.
fn tmp_roots(command: &[String]) -> Vec<String> {
    let mut roots: Vec<String> = command
        .iter()
        .filter_map(|arg| {
            let rest = arg.strip_prefix("/tmp/")?;
            let top = rest
                .split('/')
                .next()
                .filter(|t| !t.is_empty() && *t != "..")?;
            let root = format!("/tmp/{top}");
            Path::new(&root).exists().then_some(root)
        })
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(network: Network) -> InstanceSpec {
        InstanceSpec {
            id: "i1".into(),
            server: "s".into(),
            user: None,
            command: vec!["server".into(), "--flag".into()],
            env: vec![],
            data_dir: "/data/instances/i1".into(),
            network,
            shared: false,
        }
    }

    #[test]
    fn command_hides_hangar_data_and_binds_only_the_instance_dir() {
        let sb = Sandbox {
            mode: SandboxMode::Auto,
            bwrap: Some("/usr/bin/bwrap".into()),
            problem: None,
            hidden: vec!["/data".into()],
        };
        let cmd = sb.wrap_command(&spec(Network::None)).join(" ");
        assert!(cmd.starts_with("/usr/bin/bwrap --ro-bind / / "));
        let hide = cmd.find("--tmpfs /data ").unwrap();
        let bind = cmd
            .find("--bind /data/instances/i1 /data/instances/i1")
            .unwrap();
        assert!(
            hide < bind,
            "the instance dir is bound after the data dir is hidden"
        );
        assert!(cmd.contains("--unshare-net"));
        assert!(cmd.ends_with("-- server --flag"));
        assert!(!sb
            .wrap_command(&spec(Network::Host))
            .join(" ")
            .contains("--unshare-net"));
    }

    #[test]
    fn servers_under_tmp_stay_visible_read_only_but_hangar_data_stays_hidden() {
        let base = std::env::temp_dir().join(format!("hangar-sandbox-test-{}", std::process::id()));
        std::fs::create_dir_all(base.join("bin")).unwrap();
        let program = base.join("bin/server").display().to_string();
        let data = base.join("data");
        let sb = Sandbox {
            mode: SandboxMode::Auto,
            bwrap: Some("/usr/bin/bwrap".into()),
            problem: None,
            hidden: vec![data.clone()],
        };
        let mut s = spec(Network::Host);
        s.command = vec![program.clone()];
        let cmd = sb.wrap_command(&s).join(" ");
        let root = format!("/tmp/{}", base.file_name().unwrap().to_str().unwrap());
        if base.starts_with("/tmp") {
            let bind = cmd
                .find(&format!("--ro-bind {root} {root}"))
                .expect("the tree is shown again");
            let hide = cmd.find(&format!("--tmpfs {}", data.display())).unwrap();
            assert!(bind < hide, "data hidden after the tree is shown: {cmd}");
        }
        assert!(tmp_roots(&["/tmp/../etc/x".to_owned(), "relative".to_owned()]).is_empty());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn without_bwrap_the_command_runs_as_is() {
        let sb = Sandbox {
            mode: SandboxMode::Auto,
            bwrap: None,
            problem: Some("x".into()),
            hidden: vec![],
        };
        assert_eq!(
            sb.wrap_command(&spec(Network::Host)),
            vec!["server", "--flag"]
        );
    }
}
