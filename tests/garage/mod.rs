//! A real Garage server (or a three-node cluster) for the S3 tests.
//!
//! Each test gets its own Garage: `garage` from PATH, or `CAIRN_GARAGE_BIN`,
//! started on free loopback ports in a temporary directory with a generated
//! configuration. The layout, a bucket and an access key are set up through
//! Garage's own CLI, and every node is killed when the value is dropped.
//! When Garage cannot be found the test fails, saying how to install it:
//! S3 tests never skip silently.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Node {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub s3_port: u16,
    pub rpc_port: u16,
    pub admin_port: u16,
    child: Option<Child>,
}

pub struct Garage {
    _tmp: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    bin: PathBuf,
}

pub fn garage_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_GARAGE_BIN") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("garage")).find(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!(
            "Garage is not installed, and the S3 tests need a real Garage server.\n\
             Install it with `cargo install garage --locked --version 2.5.0` (or run .ci/run, which does),\n\
             or point CAIRN_GARAGE_BIN at a garage binary."
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(bin: &Path, config: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(bin).arg("-c").arg(config).args(args).stdin(Stdio::null()).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "garage {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Retries `f` until it succeeds or `limit` passes.
fn until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > limit => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no `{name}` in garage output:\n{text}"))
}

impl Garage {
    /// A single node with replication factor 1.
    pub fn start() -> Garage {
        Garage::start_nodes(1, 1)
    }

    /// Three nodes in three zones with replication factor 3.
    pub fn start_cluster() -> Garage {
        Garage::start_nodes(3, 3)
    }

    fn start_nodes(n: usize, replication: usize) -> Garage {
        let bin = garage_bin();
        let tmp = tempfile::tempdir().unwrap();
        let secret: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        let mut nodes = Vec::new();
        for i in 0..n {
            let dir = tmp.path().join(format!("node{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
            let config = dir.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = \"{d}/meta\"\n\
                     data_dir = \"{d}/data\"\n\
                     db_engine = \"sqlite\"\n\
                     replication_factor = {replication}\n\
                     rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
                     rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
                     rpc_secret = \"{secret}\"\n\
                     [s3_api]\n\
                     s3_region = \"garage\"\n\
                     api_bind_addr = \"127.0.0.1:{s3_port}\"\n\
                     root_domain = \".s3.garage.localhost\"\n\
                     [admin]\n\
                     api_bind_addr = \"127.0.0.1:{admin_port}\"\n",
                    d = dir.display()
                ),
            )
            .unwrap();
            let mut node = Node { dir, config, s3_port, rpc_port, admin_port, child: None };
            node.child = Some(spawn(&bin, &node));
            nodes.push(node);
        }
        let c0 = nodes[0].config.clone();
        let ids: Vec<String> = nodes
            .iter()
            .map(|nd| {
                until("garage node id", Duration::from_secs(30), || run(&bin, &nd.config, &["node", "id", "-q"]))
                    .trim()
                    .to_string()
            })
            .collect();
        for id in &ids[1..] {
            until("garage node connect", Duration::from_secs(30), || run(&bin, &c0, &["node", "connect", id]));
        }
        for (i, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap();
            let zone = format!("dc{}", i + 1);
            until("garage layout assign", Duration::from_secs(30), || {
                run(&bin, &c0, &["layout", "assign", "-z", &zone, "-c", "1G", short])
            });
        }
        run(&bin, &c0, &["layout", "apply", "--version", "1"]).unwrap();
        let bucket = "cairn-test".to_string();
        until("garage bucket create", Duration::from_secs(30), || run(&bin, &c0, &["bucket", "create", &bucket]));
        let key = run(&bin, &c0, &["key", "create", "cairn-test-key"]).unwrap();
        let key_id = field(&key, "Key ID:");
        let secret_key = field(&key, "Secret key:");
        run(&bin, &c0, &["bucket", "allow", "--read", "--write", "--owner", &bucket, "--key", &key_id]).unwrap();
        let g = Garage { _tmp: tmp, nodes, bucket, key_id, secret: secret_key, bin };
        for i in 0..n {
            g.wait_s3(i);
        }
        g
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.nodes[0].s3_port)
    }

    /// How many requests of `api_endpoint` (`HeadObject`, `PutObject`…)
    /// the first node has served, from its metrics.
    #[allow(dead_code, reason = "not every test binary counts requests")]
    pub fn requests(&self, api_endpoint: &str) -> u64 {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", self.nodes[0].admin_port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.") && text.contains(" 200 "), "garage metrics: {text}");
        let series = format!("api_s3_request_counter{{api_endpoint=\"{api_endpoint}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |n| n.trim().parse().unwrap())
    }

    /// [`Garage::requests`], which must have counted some already: a
    /// series renamed in a new Garage fails here instead of reading as 0.
    #[allow(dead_code, reason = "not every test binary counts requests")]
    pub fn requests_seen(&self, api_endpoint: &str) -> u64 {
        let n = self.requests(api_endpoint);
        assert!(n > 0, "garage counted no `{api_endpoint}` request: has its metrics series been renamed?");
        n
    }

    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// Another access key, with no permission on any bucket: the bucket
    /// refuses it (HTTP 403). Returns its id and secret.
    pub fn key_without_access(&self, name: &str) -> (String, String) {
        let key = run(&self.bin, &self.nodes[0].config, &["key", "create", name]).unwrap();
        (field(&key, "Key ID:"), field(&key, "Secret key:"))
    }

    /// Sets the credentials, region and endpoint for a cairn command.
    pub fn apply_env(&self, cmd: &mut Command) {
        cmd.env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_REGION", "garage")
            .env("CAIRN_S3_ENDPOINT", self.endpoint())
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL");
    }

    /// Waits until node `i` answers S3 requests on its port.
    pub fn wait_s3(&self, i: usize) {
        let port = self.nodes[i].s3_port;
        until("garage S3 port", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| ()).map_err(|e| e.to_string())
        });
    }

    /// Kills node `i` with SIGKILL.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` again with its data, and waits for its S3 port.
    pub fn restart_node(&mut self, i: usize) {
        self.kill_node(i);
        let child = spawn(&self.bin, &self.nodes[i]);
        self.nodes[i].child = Some(child);
        self.wait_s3(i);
    }
}

fn spawn(bin: &Path, node: &Node) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(node.dir.join("garage.log")).unwrap();
    Command::new(bin)
        .arg("-c")
        .arg(&node.config)
        .arg("server")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }
}
