//! Requirement 6: the S3 backend rides out a flaky network, a server
//! restart and the loss of a node. After each fault the repository passes
//! `check --read-data` and a restore is byte-exact.
//!
//! a. Every request goes through [`flaky::FlakyProxy`], which resets,
//!    throttles (503 SlowDown), fails (500), delays and cuts connections.
//! b. A single Garage is killed and restarted in the middle of a backup.
//! c. One node of a three-node cluster (replication 3) is killed in the
//!    middle of a backup, and stays down for the check and the restore.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a test prints what it measured")]

mod common;
mod garage;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_same_tree, random_bytes, restored, PASSWORD};
use garage::Garage;

mod flaky {
    //! A fault-injecting TCP proxy between cairn and Garage's S3 port.
    //!
    //! It listens on 127.0.0.1:0 and connects only to the loopback address
    //! it is given. It adds `connection: close` to every request it
    //! forwards, so that each request comes on a connection of its own, and
    //! for every connection it draws from a seeded RNG: forward it
    //! faithfully, or (with probability `fault_rate`, but never for more than
    //! [`MAX_STREAK`] connections in a row, so that retries cannot run out)
    //! inject one [`Fault`], dealt from a shuffled deck of the five kinds:
    //!
    //! - `Reset`: as soon as the request starts, close with `SO_LINGER 0`,
    //!   so the client gets a RST;
    //! - `SlowDown`: read the request, answer `503 Slow Down` with an S3 XML
    //!   error (`<Code>SlowDown</Code>`), close;
    //! - `ServerError`: read the request, answer a bare `500`, close;
    //! - `Delay`: forward, but hold the response back for 300 ms;
    //! - `Cut`: forward, but reset the connection at a random point of the
    //!   response: inside its body (by its `content-length`), or inside its
    //!   head when it has no body.
    //!
    //! A forwarded connection is two pumps, one thread per direction. A fault
    //! is counted when it reaches the client. Sockets have a short read
    //! timeout so that every thread sees the stop flag: dropping the proxy
    //! stops the accept loop and joins every thread.

    use std::io::{self, Read, Write};
    use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};

    /// Faulty connections in a row, at most.
    pub const MAX_STREAK: usize = 3;
    const DELAY: Duration = Duration::from_millis(300);
    /// How often blocked threads look at the stop flag.
    const TICK: Duration = Duration::from_millis(50);

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Fault {
        Reset,
        SlowDown,
        ServerError,
        Delay,
        Cut,
    }

    impl Fault {
        pub const ALL: [Fault; 5] = [Fault::Reset, Fault::SlowDown, Fault::ServerError, Fault::Delay, Fault::Cut];
    }

    struct Shared {
        upstream: SocketAddr,
        stop: AtomicBool,
        connections: AtomicUsize,
        hits: [AtomicUsize; 5],
    }

    impl Shared {
        fn stopped(&self) -> bool {
            self.stop.load(SeqCst)
        }
        fn hit(&self, f: Fault) {
            self.hits[f as usize].fetch_add(1, SeqCst);
        }
    }

    pub struct FlakyProxy {
        addr: SocketAddr,
        shared: Arc<Shared>,
        accept: Option<JoinHandle<()>>,
    }

    impl FlakyProxy {
        pub fn start(upstream: SocketAddr, fault_rate: f64, seed: u64) -> FlakyProxy {
            assert!(upstream.ip().is_loopback(), "the proxy only talks to loopback, not {upstream}");
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let shared = Arc::new(Shared {
                upstream,
                stop: AtomicBool::new(false),
                connections: AtomicUsize::new(0),
                hits: Default::default(),
            });
            let s = shared.clone();
            let accept = std::thread::spawn(move || accept_loop(listener, &s, fault_rate, seed));
            FlakyProxy { addr, shared, accept: Some(accept) }
        }

        pub fn endpoint(&self) -> String {
            format!("http://{}", self.addr)
        }

        pub fn connections(&self) -> usize {
            self.shared.connections.load(SeqCst)
        }

        /// How many times each fault reached a client.
        pub fn hits(&self) -> Vec<(Fault, usize)> {
            Fault::ALL.iter().map(|&f| (f, self.shared.hits[f as usize].load(SeqCst))).collect()
        }
    }

    impl Drop for FlakyProxy {
        fn drop(&mut self) {
            self.shared.stop.store(true, SeqCst);
            if let Some(h) = self.accept.take() {
                let _ = h.join();
            }
        }
    }

    fn accept_loop(listener: TcpListener, shared: &Arc<Shared>, fault_rate: f64, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut streak = 0;
        // The kinds are dealt from shuffled decks, so that each comes up.
        let mut deck = Vec::new();
        let mut handlers: Vec<JoinHandle<()>> = Vec::new();
        while !shared.stopped() {
            let client = match listener.accept() {
                Ok((c, _)) => c,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
            };
            shared.connections.fetch_add(1, SeqCst);
            let faulty = streak < MAX_STREAK && rng.gen_bool(fault_rate);
            let fault = faulty.then(|| {
                if deck.is_empty() {
                    deck = Fault::ALL.to_vec();
                    deck.shuffle(&mut rng);
                }
                deck.pop().unwrap()
            });
            streak = if faulty { streak + 1 } else { 0 };
            let cut_at: f64 = rng.gen();
            let s = shared.clone();
            handlers.retain(|h| !h.is_finished());
            handlers.push(std::thread::spawn(move || {
                let _ = handle(client, fault, cut_at, &s);
            }));
        }
        for h in handlers {
            let _ = h.join();
        }
    }

    /// Serves one connection; `cut_at` in [0, 1) is where a `Cut` falls.
    fn handle(client: TcpStream, fault: Option<Fault>, cut_at: f64, shared: &Shared) -> io::Result<()> {
        client.set_nonblocking(false)?;
        client.set_read_timeout(Some(TICK))?;
        client.set_write_timeout(Some(Duration::from_secs(10)))?;
        match fault {
            Some(Fault::Reset) => {
                // Wait for the request to start: a connection the client
                // never uses would not count as a fault.
                read_some(&client, &mut [0; 1], Instant::now() + Duration::from_secs(30), shared)?;
                shared.hit(Fault::Reset);
                reset(client);
                return Ok(());
            }
            Some(f @ (Fault::SlowDown | Fault::ServerError)) => {
                read_request(&client, shared)?;
                (&client).write_all(error_response(f).as_bytes())?;
                shared.hit(f);
                return client.shutdown(Shutdown::Write);
            }
            _ => {}
        }
        let server = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5))?;
        server.set_read_timeout(Some(TICK))?;
        server.set_write_timeout(Some(Duration::from_secs(10)))?;
        forward_request_line(&client, &server, shared)?;
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                pump(&client, &server, usize::MAX, Duration::ZERO, || done.load(SeqCst) || shared.stopped());
                let _ = server.shutdown(Shutdown::Write);
            });
            let quit = || shared.stopped();
            // Whether the fault, if any, reached the client.
            let reached = match fault {
                Some(Fault::Cut) => forward_cut(&server, &client, cut_at, shared).is_ok(),
                Some(Fault::Delay) => pump(&server, &client, usize::MAX, DELAY, quit) > 0,
                _ => {
                    pump(&server, &client, usize::MAX, Duration::ZERO, quit);
                    false
                }
            };
            done.store(true, SeqCst);
            if let (Some(f), true) = (fault, reached) {
                shared.hit(f);
            }
        });
        if fault == Some(Fault::Cut) {
            reset(client);
        }
        Ok(())
    }

    /// Copies `from` to `to` until end of file, an error, `quit()`, or
    /// `budget` bytes; the first bytes wait `delay`. Returns the bytes sent.
    fn pump(
        mut from: &TcpStream,
        mut to: &TcpStream,
        budget: usize,
        delay: Duration,
        quit: impl Fn() -> bool,
    ) -> usize {
        let mut buf = [0u8; 16 * 1024];
        let mut sent = 0;
        while sent < budget && !quit() {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n.min(budget - sent),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
                Err(_) => break,
            };
            if sent == 0 {
                std::thread::sleep(delay);
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            sent += n;
        }
        sent
    }

    /// Forwards the response up to `cut_at` of its body (of its head when
    /// it has no body); Ok when it was cut there.
    fn forward_cut(server: &TcpStream, mut client: &TcpStream, cut_at: f64, shared: &Shared) -> io::Result<()> {
        let (got, end) = read_until(server, b"\r\n\r\n", shared)?;
        let body = content_length(&got[..end]);
        let cut =
            if body > 0 { end + (cut_at * body as f64) as usize } else { 1 + (cut_at * (end - 1) as f64) as usize };
        let now = cut.min(got.len());
        client.write_all(&got[..now])?;
        if pump(server, client, cut - now, Duration::ZERO, || shared.stopped()) < cut - now {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Reads what the peer sent so far (at least a byte), waiting at most
    /// until `deadline`.
    fn read_some(mut c: &TcpStream, buf: &mut [u8], deadline: Instant, shared: &Shared) -> io::Result<usize> {
        loop {
            if shared.stopped() || Instant::now() > deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
            match c.read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => return Ok(n),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads from `c` until `marker`; returns the bytes read and where the
    /// marker ends in them.
    fn read_until(c: &TcpStream, marker: &[u8], shared: &Shared) -> io::Result<(Vec<u8>, usize)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 16 * 1024];
        let mut got = Vec::new();
        loop {
            if let Some(i) = got.windows(marker.len()).position(|w| w == marker) {
                return Ok((got, i + marker.len()));
            }
            let n = read_some(c, &mut buf, deadline, shared)?;
            got.extend_from_slice(&buf[..n]);
        }
    }

    fn content_length(head: &[u8]) -> usize {
        let text = String::from_utf8_lossy(head).to_ascii_lowercase();
        text.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }

    /// Sends the request line on with `connection: close` after it, so that
    /// the server closes the connection after this one request.
    fn forward_request_line(client: &TcpStream, mut server: &TcpStream, shared: &Shared) -> io::Result<()> {
        let (got, line_end) = read_until(client, b"\r\n", shared)?;
        server.write_all(&got[..line_end])?;
        server.write_all(b"connection: close\r\n")?;
        server.write_all(&got[line_end..])
    }

    /// Reads one request, head and body (unless the client waits for
    /// `100 Continue`), so that the answer is read rather than lost in a RST.
    fn read_request(c: &TcpStream, shared: &Shared) -> io::Result<()> {
        let (got, end) = read_until(c, b"\r\n\r\n", shared)?;
        if String::from_utf8_lossy(&got[..end]).to_ascii_lowercase().contains("\r\nexpect: 100-continue") {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 16 * 1024];
        let mut left = content_length(&got[..end]).saturating_sub(got.len() - end);
        while left > 0 {
            left = left.saturating_sub(read_some(c, &mut buf, deadline, shared)?);
        }
        Ok(())
    }

    fn error_response(f: Fault) -> String {
        let (status, body) = match f {
            Fault::SlowDown => (
                "503 Slow Down",
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                 <Message>Please reduce your request rate.</Message>\
                 <RequestId>flaky-proxy</RequestId></Error>",
            ),
            _ => ("500 Internal Server Error", ""),
        };
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    /// Closes with a TCP RST rather than a FIN.
    fn reset(s: TcpStream) {
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: a valid socket, and a `linger` of the size passed.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        drop(s);
    }
}

/// One cairn client of a Garage repository (`s3://bucket/repo`), with its
/// own cache and, optionally, another endpoint (the proxy).
struct Client {
    dir: tempfile::TempDir,
    endpoint: Option<String>,
}

impl Client {
    fn new() -> Client {
        Client { dir: tempfile::tempdir().unwrap(), endpoint: None }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn command(&self, g: &Garage) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        g.apply_env(&mut c);
        if let Some(ep) = &self.endpoint {
            c.env("CAIRN_S3_ENDPOINT", ep);
        }
        c.env("CAIRN_REPO", g.url("repo"))
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.path("cache"))
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .stdin(Stdio::null());
        c
    }

    fn ok(&self, g: &Garage, args: &[&str]) -> String {
        let started = Instant::now();
        let out = self.command(g).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "cairn {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("  cairn {} took {:.1} s", args[0], started.elapsed().as_secs_f64());
        String::from_utf8(out.stdout).unwrap()
    }

    fn init(&self, g: &Garage, extra: &[&str]) {
        let mut args = vec!["init", "--kdf-memory-kib", "19456", "--chunk-sizes", "16384,65536,262144"];
        args.extend_from_slice(&["--pack-size-mib", "1"]);
        args.extend_from_slice(extra);
        self.ok(g, &args);
    }

    /// `backup --json` of `src` in a child process, output to files.
    fn spawn_backup(&self, g: &Garage, src: &Path, name: &str) -> Child {
        let out = std::fs::File::create(self.path(&format!("{name}.out"))).unwrap();
        let err = std::fs::File::create(self.path(&format!("{name}.err"))).unwrap();
        let mut c = self.command(g);
        // cairn's own debug messages name each retried attempt.
        c.env("CAIRN_LOG", "cairn=debug");
        c.args(["backup", "--json"]).arg(src).stdout(out).stderr(err).spawn().unwrap()
    }

    fn backup(&self, g: &Garage, src: &Path, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["backup", "--json"];
        args.extend_from_slice(extra);
        args.push(src.to_str().unwrap());
        serde_json::from_str(&self.ok(g, &args)).unwrap()
    }

    /// `check --read-data`, then a verified restore compared with `src`.
    fn check_and_restore(&self, g: &Garage, src: &Path, extra: &[&str], target: &str) {
        let mut args = vec!["check", "--read-data"];
        args.extend_from_slice(extra);
        self.ok(g, &args);
        let t = self.path(target);
        let mut args = vec!["restore", "latest", "--target", t.to_str().unwrap(), "--verify"];
        args.extend_from_slice(extra);
        self.ok(g, &args);
        assert_same_tree(src, &restored(&t, src));
    }
}

/// `files` incompressible files of `size` bytes, plus a few small ones.
fn make_tree(src: &Path, files: usize, size: usize) -> u64 {
    std::fs::create_dir_all(src.join("small")).unwrap();
    let mut total = 0;
    for i in 0..files {
        std::fs::write(src.join(format!("big{i}.bin")), random_bytes(size, 100 + i as u64)).unwrap();
        total += size as u64;
    }
    for i in 0..20 {
        let text = format!("small file {i}\n").repeat(i + 1);
        std::fs::write(src.join("small").join(format!("f{i}")), &text).unwrap();
        total += text.len() as u64;
    }
    total
}

/// Files under `dir`, recursively (0 when it does not exist).
fn files_under(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten().map(|e| if e.file_type().unwrap().is_dir() { files_under(&e.path()) } else { 1 }).sum()
}

/// Polls until `cond` holds; fails if `child` exits first or `limit` passes.
fn wait_until(child: &mut Child, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the backup ended ({st}) before {what}: the fault would prove nothing; back up more data");
        }
        assert!(start.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn summary(out: &Output) -> serde_json::Value {
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["summary"].clone()
}

#[test]
fn a_flaky_network_is_ridden_out_by_retries() {
    let started = Instant::now();
    let g = Garage::start();
    let upstream = format!("127.0.0.1:{}", g.nodes[0].s3_port).parse().unwrap();
    let proxy = flaky::FlakyProxy::start(upstream, 0.3, 0x5eed_cafe);
    let c = Client { endpoint: Some(proxy.endpoint()), ..Client::new() };
    let conc = ["--s3-concurrency", "4"];
    c.init(&g, &conc);
    let src = c.path("src");
    let total = make_tree(&src, 6, 1_000_000);
    let s = c.backup(&g, &src, &conc);
    assert_eq!(s["summary"]["bytes_total"], total, "{s}");
    assert!(s["summary"]["packs_added"].as_u64().unwrap() >= 5, "several packs: {s}");
    c.check_and_restore(&g, &src, &conc, "t1");
    // An incremental backup and another round of reads: more connections,
    // so that every kind of fault gets its chance.
    std::fs::write(src.join("big0.bin"), random_bytes(1_000_000, 99)).unwrap();
    c.backup(&g, &src, &conc);
    c.check_and_restore(&g, &src, &conc, "t2");
    let hits = proxy.hits();
    eprintln!(
        "faults over {} connections: {hits:?}; took {:.1} s",
        proxy.connections(),
        started.elapsed().as_secs_f64()
    );
    for (fault, n) in hits {
        assert!(
            n > 0,
            "no {fault:?} fault was injected over {} connections: the test proves nothing",
            proxy.connections()
        );
    }
    // Dropping the proxy stops it: the drop joins every one of its threads.
    drop(proxy);
}

#[test]
fn a_server_restart_during_a_backup_loses_nothing() {
    backup_through_an_outage(Some(Duration::from_secs(1)));
}

/// The other outcome of a restart: the server stays down until the backup
/// gives up, which it must do with an error naming the operation and the
/// object; the next backup reuses the packs stored before.
#[test]
fn bug_a_backup_that_outlived_its_retries_said_only_that_the_uploader_stopped() {
    backup_through_an_outage(None);
}

/// Kills a single Garage once a backup stored a few packs, and starts it
/// again after `down`, or (None) only once the backup gave up. Either way
/// the repository checks, the next backup reuses what was stored, and the
/// restore is byte-exact.
fn backup_through_an_outage(down: Option<Duration>) {
    let started = Instant::now();
    let mut g = Garage::start();
    let c = Client::new();
    c.init(&g, &[]);
    let src = c.path("src");
    let total = make_tree(&src, 10, 2_000_000);
    let blocks = g.nodes[0].dir.join("data");
    let before = files_under(&blocks);
    let first_started = Instant::now();
    let mut child = c.spawn_backup(&g, &src, "first");
    wait_until(&mut child, "a few packs were stored", Duration::from_secs(30), || files_under(&blocks) >= before + 3);
    g.kill_node(0);
    let killed = Instant::now();
    eprintln!("  garage killed after {} block files", files_under(&blocks) - before);
    let status = match down {
        Some(d) => {
            std::thread::sleep(d);
            g.restart_node(0);
            eprintln!("  garage back after {:.1} s", killed.elapsed().as_secs_f64());
            common::wait_exit(&mut child, Duration::from_secs(60))
        }
        None => {
            let status = common::wait_exit(&mut child, Duration::from_secs(60));
            g.restart_node(0);
            status
        }
    };
    let out = Output {
        status,
        stdout: std::fs::read(c.path("first.out")).unwrap(),
        stderr: std::fs::read(c.path("first.err")).unwrap(),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let retries = stderr.matches("retrying").count();
    eprintln!("  the first backup took {:.1} s, {retries} retries", first_started.elapsed().as_secs_f64());
    let first_failed = !status.success();
    // A one-second outage is well inside the retry budget (8 tries, about
    // 22 s of back-off): that backup must ride it out, not merely fail well.
    assert!(down.is_none() || !first_failed, "the backup did not ride out a {down:?} outage: {stderr}");
    if first_failed {
        // What the user sees, without the debug log.
        let error: String = stderr.lines().filter(|l| !l.contains("DEBUG")).map(|l| format!("{l}\n")).collect();
        eprintln!("  the first backup failed: {error}");
        assert_eq!(status.code(), Some(1), "{error}");
        let names_op = ["upload", "download", "list", "stat"].iter().any(|op| error.contains(&format!("{op} `s3://")));
        assert!(
            names_op && error.contains("s3://cairn-test/repo/") && error.contains("` failed: "),
            "a failure names the operation and the object: {error}"
        );
    } else {
        assert!(down.is_some(), "a backup cannot complete while the server is down");
        assert_eq!(summary(&out)["bytes_total"], total);
        assert!(retries > 0, "the backup went through the restart, so it retried: {stderr}");
        eprintln!("  the first backup completed through the restart");
    }
    c.ok(&g, &["check", "--read-data"]);
    let again = c.backup(&g, &src, &[]);
    let added = again["summary"]["data_added"].as_u64().unwrap();
    eprintln!("  the second backup added {added} of {total} bytes");
    // After a failure, the packs stored before it are adopted rather than
    // uploaded again; after a success, at most a tree or two is new (the
    // parents of `src` may have changed).
    assert!(added < total, "the second backup reuses the packs stored by the first: {again}");
    if !first_failed {
        assert_eq!(again["summary"]["bytes_read"], 0, "an unchanged tree is not read again: {again}");
    }
    c.check_and_restore(&g, &src, &[], "t");
    eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn a_lost_node_does_not_stop_a_backup_or_a_restore() {
    let started = Instant::now();
    let mut g = Garage::start_cluster();
    eprintln!("  cluster up in {:.1} s", started.elapsed().as_secs_f64());
    let c = Client::new();
    c.init(&g, &[]);
    let src = c.path("src");
    let total = make_tree(&src, 10, 2_000_000);
    let blocks = g.nodes[2].dir.join("data");
    let before = files_under(&blocks);
    let backup_started = Instant::now();
    let mut child = c.spawn_backup(&g, &src, "backup");
    wait_until(&mut child, "node 2 stored a few blocks", Duration::from_secs(30), || {
        files_under(&blocks) >= before + 3
    });
    g.kill_node(2);
    eprintln!("  node 2 killed after {} block files", files_under(&blocks) - before);
    let status = common::wait_exit(&mut child, Duration::from_secs(60));
    let stderr = std::fs::read_to_string(c.path("backup.err")).unwrap();
    eprintln!(
        "  the backup took {:.1} s, {} retries",
        backup_started.elapsed().as_secs_f64(),
        stderr.matches("retrying").count()
    );
    assert!(status.success(), "the backup survives the loss of a node ({status}): {stderr}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(c.path("backup.out")).unwrap()).unwrap();
    assert_eq!(s["summary"]["bytes_total"], total);
    c.check_and_restore(&g, &src, &[], "t");
    eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
}
