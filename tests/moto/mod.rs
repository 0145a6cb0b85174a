//! moto's S3 server, with IAM enforced, for the tests of S3 Object Lock,
//! versioned reads and the role policies (`tests/immutable.rs`).
//!
//! moto is a test double of AWS, not a storage system: every data-path
//! test runs on Garage. moto stands in for what Garage does not implement
//! (Object Lock, versioning, IAM policies), with the AWS rules it lacks
//! added by `aws_rules.py` (see its header).
//!
//! Each test gets its own server: `python3 tests/moto/aws_rules.py` on a
//! free loopback port, waited for by polling the port. The set-up calls
//! (bucket, IAM users and their policies, access keys) go through while
//! moto's `INITIAL_NO_AUTH_ACTION_COUNT` is unlimited; [`Moto::enforce`]
//! then sets it to 0 (moto's `/moto-api/reset-auth`), after which every
//! request must be signed by a user and is judged by its policies. The
//! server is killed when the value is dropped. Without moto the test
//! fails, saying how to install it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// An access key of a moto IAM user.
#[derive(Clone, Debug)]
pub struct Creds {
    pub key_id: String,
    pub secret: String,
}

pub struct Moto {
    child: Child,
    pub port: u16,
    _tmp: tempfile::TempDir,
}

const REGION: &str = "us-east-1";

fn python() -> String {
    std::env::var("CAIRN_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Fails loudly when moto's server cannot be imported.
fn require_moto() {
    let ok = Command::new(python())
        .args(["-c", "import moto.server, moto.s3, moto.iam"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "moto is not installed, and the Object Lock tests need its S3 server.\n\
         Install it with `pip install 'moto[server]'` (scripts/test.sh does), or point CAIRN_PYTHON \
         at a python3 that has it."
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `application/x-www-form-urlencoded` escaping.
fn form(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The text between `<tag>` and `</tag>`.
fn xml_field(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml.find(&open).unwrap_or_else(|| panic!("no <{tag}> in {xml}")) + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
    xml[start..end].to_string()
}

impl Moto {
    pub fn start() -> Moto {
        require_moto();
        let tmp = tempfile::tempdir().unwrap();
        let port = free_port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/moto/aws_rules.py");
        let log = std::fs::File::create(tmp.path().join("moto.log")).unwrap();
        let child = Command::new(python())
            .arg(&script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto ({}): {e}", script.display()));
        let mut m = Moto { child, port, _tmp: tmp };
        crate::common::wait_until("moto's port", Duration::from_secs(60), || {
            if let Ok(Some(status)) = m.child.try_wait() {
                panic!("moto exited ({status}) before it listened:\n{}", m.log());
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        m
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._tmp.path().join("moto.log")).unwrap_or_default()
    }

    /// A raw HTTP request; returns (status, body).
    fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n", self.port);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    /// An IAM call before enforcement (unsigned: moto only reads the
    /// service from the credential scope).
    fn iam(&self, params: &[(&str, &str)]) -> String {
        let mut body = "Version=2010-05-08".to_string();
        for (k, v) in params {
            body.push_str(&format!("&{k}={}", form(v)));
        }
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=setup/20250101/{REGION}/iam/aws4_request, SignedHeaders=host, Signature=0"
        );
        let (status, out) = self.http(
            "POST",
            "/",
            &[("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", &auth)],
            &body,
        );
        assert_eq!(status, 200, "IAM {params:?}: {out}");
        out
    }

    /// Creates an IAM user with one inline policy; returns its access key.
    pub fn user(&self, name: &str, policy: &serde_json::Value) -> Creds {
        self.iam(&[("Action", "CreateUser"), ("UserName", name)]);
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", &format!("{name}-policy")),
            ("PolicyDocument", &policy.to_string()),
        ]);
        let out = self.iam(&[("Action", "CreateAccessKey"), ("UserName", name)]);
        Creds { key_id: xml_field(&out, "AccessKeyId"), secret: xml_field(&out, "SecretAccessKey") }
    }

    /// From now on every request must be signed and is judged by its
    /// user's policies (INITIAL_NO_AUTH_ACTION_COUNT = 0).
    pub fn enforce(&self) {
        let (status, out) = self.http("POST", "/moto-api/reset-auth", &[], "0");
        assert_eq!(status, 200, "reset-auth: {out}");
    }

    /// An S3 client with `creds`, on its own small runtime.
    pub fn client(&self, creds: &Creds) -> S3 {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(REGION))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                &creds.key_id,
                &creds.secret,
                None,
                None,
                "moto-test",
            ))
            .build();
        S3 { rt, client: aws_sdk_s3::Client::from_conf(conf) }
    }

    /// Sets the environment of a cairn command to use `creds` on this server.
    pub fn apply_env(&self, cmd: &mut Command, creds: &Creds) {
        cmd.env("AWS_ACCESS_KEY_ID", &creds.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &creds.secret)
            .env("AWS_REGION", REGION)
            .env("CAIRN_S3_ENDPOINT", self.endpoint())
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("CAIRN_S3_PROFILE");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain S3 client for the tests' own requests (set-up, attacks, checks).
pub struct S3 {
    pub rt: tokio::runtime::Runtime,
    pub client: aws_sdk_s3::Client,
}

impl S3 {
    pub fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }
}
