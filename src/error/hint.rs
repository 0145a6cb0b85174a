//! What each error suggests to the person who meets it: the `hint:` line
//! under `error:`.

use super::{BackendError, Error, CODE_ACCESS_DENIED, CODE_UNREACHABLE};

impl BackendError {
    /// What to check, for the failures a person can act on.
    pub fn hint(&self) -> Option<String> {
        match self.code.as_deref() {
            Some(CODE_UNREACHABLE) => Some(
                "check the endpoint (--s3-endpoint, CAIRN_S3_ENDPOINT or AWS_ENDPOINT_URL; without one, AWS in \
                 the region of AWS_REGION or the profile), that the storage server runs, and that this host \
                 reaches it (firewall, proxy, DNS)"
                    .into(),
            ),
            Some(CODE_ACCESS_DENIED) => Some(
                "the credential in use may not do this: check its policy (docs/STORAGE.md lists the \
                 permissions of each role), the AWS profile (--s3-profile) and the file permissions"
                    .into(),
            ),
            Some("NoSuchBucket") => Some("check the bucket name in the repository URL, or create the bucket".into()),
            Some("InvalidAccessKeyId" | "SignatureDoesNotMatch") => Some(
                "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the profile's keys): the storage does not \
                 accept them"
                    .into(),
            ),
            _ => None,
        }
    }
}

impl Error {
    /// A suggestion for the user, shown as `hint:` under the error.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::WrongPassword { .. } => Some(
                "check CAIRN_PASSWORD, --password-file or CAIRN_PASSWORD_COMMAND; \
                 `cairn key list` shows the slots once you are in"
                    .into(),
            ),
            Error::NoKeySlots { .. } => Some(
                "the key slots were deleted: restore `keys/` from a copy of the repository; without a slot the \
                 data cannot be decrypted"
                    .into(),
            ),
            Error::KeySlotDamaged { slot, .. } => Some(format!(
                "if your password belongs to `{slot}`, restore that file from a copy of the repository; \
                 otherwise check the password. Any other password still opens the repository, and \
                 `cairn key remove` can then remove the damaged slot"
            )),
            Error::KeySlotRefused { slot, .. } => Some(format!(
                "cairn never writes such a slot, so someone planted `{slot}` (or it is damaged): check the password, \
                 and remove the slot with `cairn key remove` using a password that opens the repository"
            )),
            Error::ForeignKeySlot { slot } => Some(format!(
                "`{slot}` was copied from another repository: use the password of one of this repository's own \
                 slots, and remove the copy with `cairn key remove`"
            )),
            Error::TooManyKeySlots { .. } => Some(
                "set CAIRN_KEY_ID to the id (or a prefix) of your password's key slot, which is then tried first; \
                 `cairn key list` shows the ids"
                    .into(),
            ),
            Error::NoPassword => {
                Some("set CAIRN_PASSWORD, pass --password-file FILE, or set CAIRN_PASSWORD_COMMAND".into())
            }
            Error::NoRepository(_) => Some("create one with `cairn init`".into()),
            Error::SnapshotNotFound(_) | Error::AmbiguousSnapshot(_) => {
                Some("`cairn snapshots` lists the snapshots; give a longer id prefix or `latest`".into())
            }
            Error::NewestUnknown { .. } => Some(
                "name a snapshot explicitly or run `cairn check`. `cairn snapshots` lists the snapshots, damaged \
                 ones included; a damaged snapshot comes back from a copy of the repository, or is deleted from \
                 `snapshots/` in the storage"
                    .into(),
            ),
            Error::Integrity { .. } => {
                Some("run `cairn check --read-data` to find every damaged object and the files it affects".into())
            }
            Error::UsedBlobNotIndexed { .. } => Some(
                "run `cairn check`: it names the snapshots that use blobs no index lists. An index file may be \
                 missing or damaged; `cairn repair undelete` brings back deleted ones from a versioned bucket"
                    .into(),
            ),
            Error::TooLarge { .. } => Some(
                "the object is damaged or was forged by someone with the password; cairn refuses to expand it \
                 past the limit of its kind (docs/FORMAT.md, \"Limits\"). `cairn check` lists every such object"
                    .into(),
            ),
            Error::TreeTooDeep { .. } => Some(
                "no file system nests that deep: the tree is damaged or forged. `cairn check` names the \
                 snapshots it affects; restore another snapshot"
                    .into(),
            ),
            Error::TooManyEntries { limit, .. } => Some(format!(
                "If the snapshot is genuine, raise the limit with --max-entries (now {limit}); a \
                 forged tree can repeat one subtree to make billions of paths, which `cairn check` shows as a \
                 few trees"
            )),
            Error::Locked { remedy, .. } => Some(remedy.clone()),
            Error::Untrusted { fix, .. } => Some(fix.clone()),
            Error::UnsafeDrillTarget { .. } => Some(
                "a drill restores into an empty scratch directory away from the policy's sources; \
                 give an empty --target elsewhere, or leave it out to use <state>/scratch"
                    .into(),
            ),
            Error::Mount { .. } => Some(
                "mounting needs the FUSE device /dev/fuse (`modprobe fuse`) and, unless run as root, \
                 fusermount3 from fuse3 (`apt-get install fuse3`); `fusermount3 -u MOUNTPOINT` or \
                 `umount MOUNTPOINT` undoes a mount left behind"
                    .into(),
            ),
            Error::NoRecoveryPoint { .. } => Some(
                "back the policy up first (`cairn backup --policy NAME`); `cairn snapshots` lists snapshots".into(),
            ),
            Error::State { .. } => {
                Some("check the state directory (--state DIR or CAIRN_STATE_DIR) and its permissions".into())
            }
            Error::ObjectLockUnavailable { .. } => Some(
                "create the bucket with Object Lock enabled (`aws s3api create-bucket … \
                 --object-lock-enabled-for-bucket`), or run init without --immutable; docs/STORAGE.md has the steps"
                    .into(),
            ),
            Error::MissingPermission { role, .. } => Some(format!(
                "run it with the {role} credential (e.g. --s3-profile NAME); docs/STORAGE.md lists each role's permissions"
            )),
            Error::InvalidPublicKey { .. } => Some(
                "give the key exactly as `cairn evidence pubkey` prints it: one line `cairn-evidence-ed25519:<base64>`"
                    .into(),
            ),
            Error::EvidenceKeyFile { .. } => Some(
                "a host key must be a file of its own (no symlink), owned by the user cairn runs as, mode 0600, \
                 in a directory only that user may enter; `cairn evidence enroll` makes one"
                    .into(),
            ),
            Error::EvidenceSigner { .. } => Some(
                "the command runs as `sh -c COMMAND` with CAIRN_EVIDENCE_OP=public (print the public key) or \
                 sign (sign stdin, print the base64 signature); try it by hand"
                    .into(),
            ),
            Error::EvidenceChainMissing { .. } => Some(
                "cairn never starts a new chain under existing snapshots: someone may have erased `evidence/`. \
                 Restore it from a copy (or from the bucket's object versions); if this repository was made \
                 before cairn kept evidence, `cairn evidence adopt` starts its chain with a record of every \
                 snapshot it holds"
                    .into(),
            ),
            Error::FutureTime { .. } => Some(
                "check this machine's clock (and the time given with --time); a snapshot from the future would \
                 count as the newest recovery point for ever"
                    .into(),
            ),
            Error::EvidenceKeyMissing { .. } => Some(
                "restore `evidence/key` from a copy of the repository; cairn does not sign with a new key, \
                 because the records signed with the old one would no longer verify"
                    .into(),
            ),
            Error::Backend(b) => b.hint(),
            Error::NoRepositoryGiven => {
                Some("pass --repo URL or set CAIRN_REPO (a path, file:///path or s3://bucket/prefix)".into())
            }
            Error::BadRepositoryUrl { .. } => {
                Some("give a path, file:///path or s3://bucket/prefix (with --s3-endpoint URL for Garage or MinIO)".into())
            }
            Error::AsOfNeedsVersions { .. } => Some(
                "a local repository keeps no earlier versions: restore it from a copy, or read a versioned S3 \
                 bucket (docs/STORAGE.md)"
                    .into(),
            ),
            Error::SeveralRepositories { .. } => {
                Some("give one --repo (CAIRN_REPO counts as one when no --repo is given)".into())
            }
            Error::EmptyPassword { .. } => Some(
                "an empty password protects nothing: give one with CAIRN_PASSWORD, --password-file, \
                 CAIRN_PASSWORD_COMMAND or the policy's password_* setting"
                    .into(),
            ),
            Error::PasswordsDiffer => Some("type the same password twice".into()),
            Error::PasswordCommandFailed { .. } => Some(
                "run the command by hand with `sh -c '…'`: it must print the password on its first line and \
                 exit 0; what it printed on stderr is above"
                    .into(),
            ),
            Error::PasswordEnvUnset { var } => Some(format!(
                "set {var} in the environment cairn runs in (for the daemon: systemd's Environment= or \
                 EnvironmentFile=), or use password_file or password_command"
            )),
            Error::KdfSettings { .. } => {
                Some("--kdf-memory-kib takes 19456 to 262144; leave it out for the default".into())
            }
            Error::KeySlotNotFound { .. } | Error::AmbiguousKeySlot { .. } => {
                Some("`cairn key list` shows the slots' ids; give a longer prefix".into())
            }
            Error::RemovingOwnKeySlot { .. } => Some(
                "open the repository with another slot's password (CAIRN_PASSWORD, --password-file) to remove \
                 this one; `cairn key list` marks the slot in use"
                    .into(),
            ),
            Error::LastKeySlot => Some(
                "without a key slot nothing can decrypt the repository: add another password first \
                 (`cairn key add`), then remove this one"
                    .into(),
            ),
            Error::BadFlag { flag, .. } => {
                Some(format!("`cairn help COMMAND` describes {flag} and the values it takes; docs/CLI.md too"))
            }
            Error::UnknownCommand(_) => Some("`cairn --help` lists the commands".into()),
            Error::FlagConflict(_) => Some("`cairn help COMMAND` shows which flags go together".into()),
            Error::BadPattern { .. } => Some(
                "patterns are globs: `*` and `?` within a name, `**` across directories, `[abc]` a class; \
                 a pattern with `/` matches whole paths, one without matches names (docs/CLI.md)"
                    .into(),
            ),
            Error::PolicyNotFound { .. } => Some(
                "check the name (`cairn status` lists the policies) and where the files are: --policies DIR, \
                 or CAIRN_POLICIES"
                    .into(),
            ),
            Error::NoRetentionRule { .. } => Some(
                "add keep_* rules under [retention] in the policy file (`cairn policy show NAME` prints it), \
                 or give --keep-* flags without --policy"
                    .into(),
            ),
            Error::BadRetention(_) => Some(
                "`cairn help forget` describes each --keep-* rule; docs/CLI.md has examples".into(),
            ),
            Error::BadDrillSetting(_) => Some("`cairn help drill` and docs/POLICY.md give the ranges".into()),
            Error::NotPolicySnapshot { policy, .. } => {
                Some(format!("`cairn snapshots --tag {policy}` lists the policy's snapshots"))
            }
            Error::NothingToBackUp { .. } => {
                Some("name files or directories: `cairn backup /etc /home`, or pipe data with --stdin".into())
            }
            Error::BackupOfRoot => Some(
                "list the top directories (`cairn backup /etc /home /srv`), and leave out /proc, /sys and /dev".into(),
            ),
            Error::BadStreamName(_) => Some("give --stdin-name a name without `/`, such as `dump.sql`".into()),
            Error::NotADirectory { .. } => Some("give a directory".into()),
            Error::NotARegularFile(_) => {
                Some("`cairn ls SNAPSHOT PATH` shows what the path is; `cairn restore` restores any kind".into())
            }
            Error::NotEmpty { .. } => Some("give a new or empty directory".into()),
            Error::DaemonNotRunning { .. } => Some(
                "start one with `cairn daemon` (or `systemctl start cairn`), with the same --state directory".into(),
            ),
            Error::DaemonSocketDenied { .. } => {
                Some("run the command as root or as the user the daemon runs as".into())
            }
            Error::DaemonRefused(_) => {
                Some("`cairn status` shows the policies the daemon knows and what runs now".into())
            }
            Error::DaemonRunning { .. } => Some(
                "run one daemon per state directory: stop the other one, or give this one another --state".into(),
            ),
            Error::UnsafeListen { .. } => Some(
                "listen on 127.0.0.1:PORT, or give --listen-token-file FILE for another address \
                 (docs/OPERATIONS.md shows a TLS reverse proxy)"
                    .into(),
            ),
            Error::WeakToken { path } => Some(format!(
                "make one with `head -c 32 /dev/urandom | base64 > {}`",
                path.display()
            )),
            Error::NoHostKey(_) => Some("`cairn evidence enroll` makes this host's key and enrolls it".into()),
            Error::BadEvidenceRecord(_) => {
                Some("this is a bug in the caller: records are JSON objects of a known kind".into())
            }
            Error::NoEvidence(_) => Some("`cairn evidence keys` and `cairn evidence head` show the chain".into()),
            Error::BadKeysFile { .. } => Some(
                "each line is `HOST KEY [revoked-after=TIME|SEQ]`, KEY as `cairn evidence pubkey` prints it; \
                 `@reader KEY` lines give read keys; # starts a comment"
                    .into(),
            ),
            Error::VerifyNeeds(_) => Some("docs/EVIDENCE.md shows how an auditor verifies".into()),
            Error::CopyNeedsPassword => Some(
                "give it with --to-password-file FILE, CAIRN_TO_PASSWORD or --to-password-command CMD; the \
                 source's password is never used for the destination"
                    .into(),
            ),
            Error::CopyIntoItself { .. } => Some("give the other repository's URL with --to".into()),
            Error::NoCopySection { .. } => {
                Some("add a [copy] table with `to = \"URL\"` and its password source (docs/POLICIES.md)".into())
            }
            Error::SnapshotHeld { snapshot, .. } => Some(format!(
                "`cairn check` names why; once you have checked it, `cairn evidence accept {snapshot}` lets it be copied"
            )),
            Error::NotImmutable { .. } => Some(
                "only a repository made with `cairn init --immutable` on a bucket with Object Lock has retention \
                 to extend"
                    .into(),
            ),
            Error::RetentionStepRace { .. } => Some("run `cairn retention extend` again".into()),
            Error::BadRepositorySettings(_) => {
                Some("leave the setting out for the default; docs/FORMAT.md gives the limits".into())
            }
            _ => None,
        }
    }
}
