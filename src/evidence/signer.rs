//! Who signs evidence: a host key kept off the repository, or the legacy
//! repository key.
//!
//! A **host key** is an ed25519 key pair of one backup host. `cairn
//! evidence enroll` (and the daemon at its first start) makes one in the
//! state directory, or takes one from a file (`--key-file`) or a command in
//! front of a KMS or TPM (`--key-command`), and registers its public half
//! in each repository it writes to ([`super::append::enroll`]). Its secret
//! never enters a repository, so neither a password holder nor the storage
//! operator can sign in its name.
//!
//! In the state directory, all under `<state>/evidence/` (mode 0700, owned
//! by the user cairn runs as; anything else is refused):
//! - `host.key`: the key cairn made, `cairn-evidence-ed25519-secret:<base64
//!   of the 32-byte seed>` and a newline, mode 0600, created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW` relative to the directory's handle;
//! - `signer.json`: which key this state directory signs with
//!   (`{"v":1,"source":"state"|"file"|"command","path"?,"command"?,
//!   "public_key","key_id"}`);
//! - `tails/<repository id>`: the last record this host appended to each
//!   repository, so that a repository rolled back behind its back is noticed
//!   ([`super::append`]);
//! - `append.lock`: serialises this host's appends (one sub-chain, one writer).
//!
//! A **key command** is run as `sh -c COMMAND` with an allow-listed
//! environment and `CAIRN_EVIDENCE_OP` set to `public` (print the public key
//! in its text form) or `sign` (read the bytes to sign on stdin, print the
//! base64 signature). cairn checks every signature it gets against the
//! enrolled public key before it writes anything.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use super::key::{key_id, parse_public, public_text, B64, LEGACY_KEY_ID};
use super::record::SignBytes;
use crate::error::{Error, Result};

/// The directory under the state directory that holds the host key.
pub const STATE_SUBDIR: &str = "evidence";
const KEY_FILE: &str = "host.key";
const CONFIG_FILE: &str = "signer.json";
/// The prefix of a secret key file.
pub const SECRET_PREFIX: &str = "cairn-evidence-ed25519-secret:";
/// How long a key command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a host key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Made by cairn in the state directory.
    State,
    /// A secret key file (`--key-file`).
    File(PathBuf),
    /// A command that signs (`--key-command`): the secret stays in it.
    Command(String),
}

impl KeySource {
    pub fn name(&self) -> &'static str {
        match self {
            KeySource::State => "state",
            KeySource::File(_) => "file",
            KeySource::Command(_) => "command",
        }
    }
}

enum Kind {
    Key(SigningKey),
    Command(String),
}

/// A key that signs records and heads.
pub struct Signer {
    kind: Kind,
    public: VerifyingKey,
    id: String,
    source: Option<KeySource>,
    /// The host name this key is enrolled for (host keys only).
    host: Option<String>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.id)
    }
}

impl Signer {
    /// The repository's sealed key: the legacy signer.
    pub fn legacy(key: SigningKey) -> Signer {
        Signer { public: key.verifying_key(), kind: Kind::Key(key), id: LEGACY_KEY_ID.into(), source: None, host: None }
    }

    /// A host key held in memory, for `host` (this machine's name by default).
    pub fn host(key: SigningKey, source: KeySource) -> Signer {
        let public = key.verifying_key();
        Signer { id: key_id(&public), public, kind: Kind::Key(key), source: Some(source), host: None }
    }

    /// The same signer, enrolled under the host name `host`.
    pub fn for_host(mut self, host: Option<String>) -> Signer {
        self.host = host;
        self
    }

    /// The host name this key signs for: the one it was enrolled with, or
    /// this machine's.
    pub fn host_name(&self) -> String {
        self.host.clone().unwrap_or_else(crate::host::hostname)
    }

    /// A host key behind a command; its public key is asked for now.
    pub fn command(command: &str) -> Result<Signer> {
        let out = run_command(command, "public", &[])?;
        let text = String::from_utf8_lossy(&out);
        let public = parse_public(&text).map_err(|e| Error::EvidenceSigner {
            detail: format!("the key command printed no public key for CAIRN_EVIDENCE_OP=public: {e}"),
        })?;
        Ok(Signer {
            id: key_id(&public),
            public,
            kind: Kind::Command(command.into()),
            source: Some(KeySource::Command(command.into())),
            host: None,
        })
    }

    /// The key id: `legacy`, or 16 hex digits.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    pub fn public(&self) -> &VerifyingKey {
        &self.public
    }

    pub fn public_text(&self) -> String {
        public_text(&self.public)
    }

    pub fn is_legacy(&self) -> bool {
        self.id == LEGACY_KEY_ID
    }

    /// Where a host key comes from; `None` for the legacy key.
    pub fn source(&self) -> Option<&KeySource> {
        self.source.as_ref()
    }
}

impl SignBytes for Signer {
    fn sign_bytes(&self, message: &[u8]) -> std::result::Result<Signature, String> {
        let sig = match &self.kind {
            Kind::Key(k) => return Ok(ed25519_dalek::Signer::sign(k, message)),
            Kind::Command(c) => {
                let out = run_command(c, "sign", message).map_err(|e| e.to_string())?;
                let text = String::from_utf8_lossy(&out);
                let bytes: [u8; 64] = B64
                    .decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or("the key command did not print a base64 ed25519 signature")?;
                Signature::from_bytes(&bytes)
            }
        };
        // Never write what the enrolled key would not verify.
        self.public
            .verify_strict(message, &sig)
            .map_err(|_| "the key command's signature does not verify with its public key".to_string())?;
        Ok(sig)
    }
}

/// Runs a key command with `CAIRN_EVIDENCE_OP=op`, `input` on stdin, in an
/// allow-listed environment; returns its stdout.
fn run_command(command: &str, op: &str, input: &[u8]) -> Result<Vec<u8>> {
    let fail = |detail: String| Error::EvidenceSigner { detail };
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(command);
    // The same allow-listed environment as every other child (no password
    // variable, no cloud credential), in its own process group.
    crate::process::ChildEnv::new(&[]).with("CAIRN_EVIDENCE_OP", op).apply(&mut cmd);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(format!("cannot start the key command: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.by_ref().take(64 * 1024).read_to_end(&mut out);
        out
    });
    let mut stderr = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stderr.by_ref().take(4096).read_to_end(&mut out);
        out
    });
    let waited = crate::process::wait_or_kill(&mut child, Instant::now() + COMMAND_TIMEOUT)
        .map_err(|e| fail(format!("waiting for the key command: {e}")))?;
    // Whatever it left running goes with it, so no grandchild keeps its
    // output open and the readers below end.
    crate::process::kill_group(&child);
    let status = match waited {
        crate::process::Waited::Exited(s) => s,
        crate::process::Waited::TimedOut(_) => {
            return Err(fail(format!("the key command did not finish within {} s", COMMAND_TIMEOUT.as_secs())));
        }
    };
    let _ = writer.join();
    let out = reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        let msg = String::from_utf8_lossy(&err);
        return Err(fail(format!("the key command ({op}) failed ({status}): {}", msg.trim())));
    }
    Ok(out)
}

/// `<state>/evidence/signer.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Config {
    v: u32,
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<String>,
    public_key: String,
    key_id: String,
    /// The host name given at enrolment (`--host`), if not this machine's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
}

/// The private directory `<state>/evidence`, opened by handle.
pub(crate) struct PrivateDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl PrivateDir {
    /// Opens `<state_dir>/evidence`; creates it (0700) when `create`.
    /// `None` when it does not exist and `create` is false. Refuses a
    /// symlink, a directory of another user, or one others can enter.
    pub(crate) fn open(state_dir: &Path, create: bool) -> Result<Option<PrivateDir>> {
        let path = state_dir.join(STATE_SUBDIR);
        if create {
            // The state directory is private whatever the umask (0700).
            crate::private::create_dir_all(state_dir).map_err(|e| Error::io(state_dir, e))?;
            use std::os::unix::fs::DirBuilderExt;
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
        let raw = match nix::fcntl::open(&path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) if !create => return Ok(None),
            Err(e) => return Err(Error::io(&path, std::io::Error::from(e))),
        };
        // SAFETY: `raw` was just opened and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| Error::io(&path, e.into()))?;
        let bad = |detail: String| Error::EvidenceKeyFile { path: path.clone(), detail };
        if st.st_uid != nix::unistd::geteuid().as_raw() {
            return Err(bad(format!("it belongs to uid {}, not to the user cairn runs as", st.st_uid)));
        }
        if st.st_mode & 0o077 != 0 {
            return Err(bad(format!("its mode is {:o}: others may enter it (chmod 700)", st.st_mode & 0o777)));
        }
        Ok(Some(PrivateDir { fd, path }))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn open_at(&self, name: &str, flags: OFlag, mode: u32) -> std::result::Result<std::fs::File, nix::errno::Errno> {
        let raw = nix::fcntl::openat(
            Some(self.fd.as_raw_fd()),
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )?;
        // SAFETY: `raw` was just opened and is owned by nothing else.
        Ok(unsafe { std::fs::File::from_raw_fd(raw) })
    }

    /// Reads a private file of this directory; `None` when missing. A file
    /// that is not regular, not ours, or readable by others is refused.
    pub(crate) fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let shown = self.path.join(name);
        let mut f = match self.open_at(name, OFlag::O_RDONLY, 0) {
            Ok(f) => f,
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(Error::io(&shown, e.into())),
        };
        check_private_file(&f, &shown)?;
        let mut out = Vec::new();
        Read::by_ref(&mut f).take(1 << 20).read_to_end(&mut out).map_err(|e| Error::io(&shown, e))?;
        Ok(Some(out))
    }

    /// Creates a new private file (0600); fails if it exists.
    pub(crate) fn create(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let shown = self.path.join(name);
        let mut f = self
            .open_at(name, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, 0o600)
            .map_err(|e| Error::io(&shown, e.into()))?;
        f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| Error::io(&shown, e))
    }

    /// Replaces a private file atomically (a new temporary, then a rename).
    pub(crate) fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let tmp = format!(".{}.tmp-{}", name.replace('/', "_"), crate::id::Id::random().short());
        self.create(&tmp, bytes)?;
        let fd = Some(self.fd.as_raw_fd());
        nix::fcntl::renameat(fd, tmp.as_str(), fd, name).map_err(|e| {
            let _ = nix::unistd::unlinkat(fd, tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
            Error::io(self.path.join(name), e.into())
        })
    }

    /// Makes a subdirectory (0700) if missing.
    pub(crate) fn subdir(&self, name: &str) -> Result<()> {
        match nix::sys::stat::mkdirat(Some(self.fd.as_raw_fd()), name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
            Err(e) => Err(Error::io(self.path.join(name), e.into())),
        }
    }

    /// An exclusive lock on `name` (created if missing), held until dropped.
    pub(crate) fn lock(&self, name: &str) -> Result<nix::fcntl::Flock<std::fs::File>> {
        let shown = self.path.join(name);
        let f = self.open_at(name, OFlag::O_RDWR | OFlag::O_CREAT, 0o600).map_err(|e| Error::io(&shown, e.into()))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| Error::io(&shown, e.into()))
    }
}

fn check_private_file(f: &std::fs::File, shown: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = f.metadata().map_err(|e| Error::io(shown, e))?;
    let bad = |detail: String| Error::EvidenceKeyFile { path: shown.to_path_buf(), detail };
    if !m.is_file() {
        return Err(bad("it is not a regular file".into()));
    }
    if m.uid() != nix::unistd::geteuid().as_raw() {
        return Err(bad(format!("it belongs to uid {}, not to the user cairn runs as", m.uid())));
    }
    if m.mode() & 0o077 != 0 {
        return Err(bad(format!("its mode is {:o}: others may read it (chmod 600)", m.mode() & 0o777)));
    }
    Ok(())
}

/// Reads a secret key file given by path (`--key-file`): not a symlink,
/// ours, 0600 or stricter.
fn read_key_file(path: &Path) -> Result<SigningKey> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    check_private_file(&f, path)?;
    let mut text = String::new();
    Read::by_ref(&mut f).take(4096).read_to_string(&mut text).map_err(|e| Error::io(path, e))?;
    parse_secret(&text, path)
}

fn parse_secret(text: &str, path: &Path) -> Result<SigningKey> {
    let bad = |detail: &str| Error::EvidenceKeyFile { path: path.to_path_buf(), detail: detail.into() };
    let b64 = text
        .trim()
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| bad(&format!("it does not start with `{SECRET_PREFIX}`")))?;
    let mut seed = B64.decode(b64).map_err(|_| bad("the part after the prefix is not base64"))?;
    let key = <[u8; 32]>::try_from(seed.as_slice()).ok().map(|s| SigningKey::from_bytes(&s));
    seed.iter_mut().for_each(|b| *b = 0);
    key.ok_or_else(|| bad("an ed25519 secret key is 32 bytes"))
}

/// The text form of a secret key file.
pub fn secret_text(key: &SigningKey) -> String {
    format!("{SECRET_PREFIX}{}\n", B64.encode(key.as_bytes()))
}

/// The signer this state directory is enrolled with; `None` when it has
/// none (this host signs nothing of its own yet).
pub fn load(state_dir: &Path) -> Result<Option<Signer>> {
    let Some(dir) = PrivateDir::open(state_dir, false)? else { return Ok(None) };
    let Some(bytes) = dir.read(CONFIG_FILE)? else { return Ok(None) };
    let shown = dir.path().join(CONFIG_FILE);
    let c: Config = serde_json::from_slice(&bytes).map_err(|e| Error::format(shown.display().to_string(), e))?;
    let signer = match c.source.as_str() {
        "state" => {
            let text = dir.read(KEY_FILE)?.ok_or_else(|| Error::EvidenceKeyFile {
                path: dir.path().join(KEY_FILE),
                detail: format!("{} names it, but it is missing", shown.display()),
            })?;
            Signer::host(parse_secret(&String::from_utf8_lossy(&text), &dir.path().join(KEY_FILE))?, KeySource::State)
        }
        "file" => {
            let path = c.path.clone().ok_or_else(|| Error::format(shown.display().to_string(), "no `path`"))?;
            Signer::host(read_key_file(&path)?, KeySource::File(path))
        }
        "command" => {
            let command =
                c.command.clone().ok_or_else(|| Error::format(shown.display().to_string(), "no `command`"))?;
            let public = parse_public(&c.public_key)?;
            Signer {
                id: key_id(&public),
                public,
                kind: Kind::Command(command.clone()),
                source: Some(KeySource::Command(command)),
                host: None,
            }
        }
        other => return Err(Error::format(shown.display().to_string(), format!("unknown source `{other}`"))),
    };
    let signer = signer.for_host(c.host.clone());
    if signer.key_id() != c.key_id {
        return Err(Error::EvidenceKeyFile {
            path: shown,
            detail: format!("it names key {}, but the key it points to is {}", c.key_id, signer.key_id()),
        });
    }
    Ok(Some(signer))
}

/// Sets up this state directory's signer from `source`: makes the key for
/// [`KeySource::State`] (unless one is there), reads the file, or asks the
/// command for its public key; records the choice, and `host` when it is
/// not this machine's name. Returns the signer and whether a new key was
/// made.
pub fn create(state_dir: &Path, source: &KeySource, host: Option<&str>) -> Result<(Signer, bool)> {
    let dir = PrivateDir::open(state_dir, true)?.expect("created");
    let mut made = false;
    let signer = match source {
        KeySource::State => match dir.read(KEY_FILE)? {
            Some(text) => Signer::host(
                parse_secret(&String::from_utf8_lossy(&text), &dir.path().join(KEY_FILE))?,
                KeySource::State,
            ),
            None => {
                let key = SigningKey::generate(&mut rand::rngs::OsRng);
                match dir.create(KEY_FILE, secret_text(&key).as_bytes()) {
                    Ok(()) => {
                        made = true;
                        Signer::host(key, KeySource::State)
                    }
                    // Another process of this host made one first: use it.
                    Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = dir.read(KEY_FILE)?.ok_or_else(|| Error::EvidenceKeyFile {
                            path: dir.path().join(KEY_FILE),
                            detail: "it vanished while being made".into(),
                        })?;
                        Signer::host(
                            parse_secret(&String::from_utf8_lossy(&text), &dir.path().join(KEY_FILE))?,
                            KeySource::State,
                        )
                    }
                    Err(e) => return Err(e),
                }
            }
        },
        KeySource::File(p) => {
            let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
            Signer::host(read_key_file(&abs)?, KeySource::File(abs))
        }
        KeySource::Command(c) => Signer::command(c)?,
    };
    let config = Config {
        v: 1,
        source: source.name().into(),
        path: match signer.source() {
            Some(KeySource::File(p)) => Some(p.clone()),
            _ => None,
        },
        command: match source {
            KeySource::Command(c) => Some(c.clone()),
            _ => None,
        },
        public_key: signer.public_text(),
        key_id: signer.key_id().to_string(),
        host: host.map(str::to_string),
    };
    dir.replace(CONFIG_FILE, &serde_json::to_vec_pretty(&config).expect("config serialises"))?;
    Ok((signer.for_host(host.map(str::to_string)), made))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_host_key_is_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none(), "no signer before enrolment");
        let (s, made) = create(dir.path(), &KeySource::State, None).unwrap();
        assert!(made);
        let key = dir.path().join("evidence/host.key");
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.path().join("evidence")).unwrap().permissions().mode() & 0o777, 0o700);
        let again = load(dir.path()).unwrap().unwrap();
        assert_eq!(again.key_id(), s.key_id());
        assert!(crate::evidence::key::is_key_id(s.key_id()));
        // Enrolling again keeps the key.
        let (same, made) = create(dir.path(), &KeySource::State, None).unwrap();
        assert!(!made);
        assert_eq!(same.key_id(), s.key_id());
    }

    #[test]
    fn a_key_others_can_read_or_a_symlinked_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path(), &KeySource::State, None).unwrap();
        let key = dir.path().join("evidence/host.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(matches!(e, Error::EvidenceKeyFile { .. }) && e.to_string().contains("others may read it"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(dir.path().join("evidence"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(load(dir.path()).unwrap_err().to_string().contains("others may enter it"));

        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(dir.path().join("evidence"), other.path().join("evidence")).unwrap();
        assert!(load(other.path()).is_err(), "a symlinked key directory is followed");
    }

    #[test]
    fn a_key_file_is_read_and_a_planted_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let k = SigningKey::generate(&mut rand::rngs::OsRng);
        let file = dir.path().join("k");
        std::fs::write(&file, secret_text(&k)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (s, made) = create(&dir.path().join("state"), &KeySource::File(file.clone()), Some("db7")).unwrap();
        assert!(!made);
        assert_eq!(s.public(), &k.verifying_key());
        let loaded = load(&dir.path().join("state")).unwrap().unwrap();
        assert_eq!((loaded.key_id(), loaded.host_name().as_str()), (s.key_id(), "db7"));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(create(&dir.path().join("s2"), &KeySource::File(link), None).is_err());
    }

    #[test]
    fn a_command_signer_is_checked_against_its_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let k = SigningKey::generate(&mut rand::rngs::OsRng);
        // A "command" that prints a fixed public key and a fixed, wrong signature.
        let cmd = format!(
            "if [ \"$CAIRN_EVIDENCE_OP\" = public ]; then echo {}; else cat >/dev/null; echo {}; fi",
            public_text(&k.verifying_key()),
            B64.encode([7u8; 64])
        );
        let (s, _) = create(dir.path(), &KeySource::Command(cmd), None).unwrap();
        assert_eq!(s.public(), &k.verifying_key());
        let e = s.sign_bytes(b"x").unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
        let failing = Signer::command("exit 3");
        assert!(matches!(failing, Err(Error::EvidenceSigner { .. })));
    }
}
