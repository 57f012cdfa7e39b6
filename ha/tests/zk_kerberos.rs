//! Kerberos (SASL GSSAPI with a keytab) to a real ZooKeeper, against a real MIT KDC from
//! Debian's `krb5-kdc` started here with a throwaway realm (no mocks).
//!
//! Needs the `kerberos` feature: `cargo test -p keel-ha --features kerberos --test zk_kerberos`
//! (and `krb5-kdc`, `krb5-admin-server`; `bin/setup` installs them).
//!
//! `KEEL_TEST_ZK_KERBEROS_OFF=1` runs Keel's side without the Kerberos login
//! (`zookeeper.sasl.disable: true`): the test must then fail (no session).
#![cfg(feature = "kerberos")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chaos_tests::{free_port, ZkEnsemble};
use keel_ha::election::Contender;
use keel_ha::{HaError, HaStores, LeaderElection, ZkSettings};

const REALM: &str = "KEEL.TEST";

/// A KDC (`krb5kdc -n`) for [`REALM`] in a temporary directory; killed and reaped on drop.
struct Kdc {
    dir: tempfile::TempDir,
    child: Child,
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sbin(name: &str) -> String {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin"] {
        let path = format!("{dir}/{name}");
        if Path::new(&path).exists() {
            return path;
        }
    }
    panic!("{name} not found: apt-get install -y krb5-kdc krb5-admin-server (bin/setup does)");
}

impl Kdc {
    fn krb5_conf(&self) -> PathBuf {
        self.dir.path().join("krb5.conf")
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = Command::new(sbin(program))
            .args(args)
            .env("KRB5_CONFIG", self.krb5_conf())
            .env("KRB5_KDC_PROFILE", self.dir.path().join("kdc.conf"))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Creates `principal` with a random key and exports it to `<dir>/<file>`.
    fn keytab(&self, principal: &str, file: &str) -> PathBuf {
        let path = self.dir.path().join(file);
        self.run("kadmin.local", &["-r", REALM, "-q", &format!("addprinc -randkey {principal}@{REALM}")]);
        self.run("kadmin.local", &["-r", REALM, "-q", &format!("ktadd -k {} {principal}@{REALM}", path.display())]);
        path
    }

    fn start() -> Kdc {
        let dir = tempfile::Builder::new().prefix("keel-kdc-").tempdir().unwrap();
        let d = dir.path().display().to_string();
        let port = free_port();
        std::fs::write(
            dir.path().join("krb5.conf"),
            format!(
                "[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n dns_lookup_realm = false\n \
                 dns_canonicalize_hostname = false\n rdns = false\n udp_preference_limit = 1\n \
                 ticket_lifetime = 1h\n\n[realms]\n {REALM} = {{\n  kdc = 127.0.0.1:{port}\n }}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("kdc.conf"),
            format!(
                "[kdcdefaults]\n kdc_listen = 127.0.0.1:{port}\n kdc_tcp_listen = 127.0.0.1:{port}\n\n[realms]\n {REALM} = {{\n  \
                 database_name = {d}/principal\n  key_stash_file = {d}/stash\n  acl_file = {d}/kadm5.acl\n  \
                 max_life = 1h\n }}\n\n[logging]\n kdc = FILE:{d}/kdc.log\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("kadm5.acl"), "").unwrap();
        let mut kdc = Kdc { dir, child: Command::new("true").spawn().unwrap() };
        kdc.run("kdb5_util", &["-r", REALM, "-P", "master-Pw-1", "create", "-s"]);
        let log = std::fs::File::create(kdc.dir.path().join("krb5kdc.out")).unwrap();
        let _ = kdc.child.wait();
        kdc.child = Command::new(sbin("krb5kdc"))
            .args(["-n", "-r", REALM])
            .env("KRB5_CONFIG", kdc.krb5_conf())
            .env("KRB5_KDC_PROFILE", kdc.dir.path().join("kdc.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("krb5kdc starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "KDC not listening on {port} after 30 s: {}", kdc.tail());
            std::thread::sleep(Duration::from_millis(50));
        }
        kdc
    }

    fn tail(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}\n{}", read("krb5kdc.out"), read("kdc.log"))
    }
}

fn settings(yaml: &str) -> ZkSettings {
    let text = format!(
        "high-availability.type: zookeeper\n\
         high-availability.zookeeper.client.session-timeout: 4 s\n\
         high-availability.zookeeper.client.connection-timeout: 4 s\n\
         high-availability.zookeeper.client.retry-wait: 500 ms\n{yaml}"
    );
    let loaded = keel_conf::from_str(&text, "zk_kerberos.yaml", &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
    ZkSettings::from_config(&loaded.config).expect("high-availability.type is zookeeper")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kerberos_keytab_login_elects_a_leader_with_creator_acls() {
    let kdc = Kdc::start();
    // The MIT library of this process reads the realm from here (before any Kerberos call).
    std::env::set_var("KRB5_CONFIG", kdc.krb5_conf());
    let zk_keytab = kdc.keytab("zookeeper/127.0.0.1", "zookeeper.keytab");
    let keel_keytab = kdc.keytab("keel", "keel.keytab");
    let jaas = kdc.dir.path().join("zk-jaas.conf");
    std::fs::write(
        &jaas,
        format!(
            "Server {{\n  com.sun.security.auth.module.Krb5LoginModule required\n  useKeyTab=true\n  \
             keyTab=\"{}\"\n  storeKey=true\n  useTicketCache=false\n  principal=\"zookeeper/127.0.0.1@{REALM}\";\n}};\n",
            zk_keytab.display()
        ),
    )
    .unwrap();
    let zk = ZkEnsemble::builder()
        .with_jvm_arg(format!("-Djava.security.auth.login.config={}", jaas.display()))
        .with_jvm_arg(format!("-Djava.security.krb5.conf={}", kdc.krb5_conf().display()))
        .with_cfg("authProvider.1", "org.apache.zookeeper.server.auth.SASLAuthenticationProvider")
        .with_cfg("sessionRequireClientSASLAuth", "true")
        .start()
        .expect("ensemble");
    let quorum = zk.connect_string();

    let off = std::env::var_os("KEEL_TEST_ZK_KERBEROS_OFF").is_some();
    let s = settings(&format!(
        "high-availability.zookeeper.quorum: {quorum}\n\
         high-availability.cluster-id: krb\n\
         security.kerberos.login.keytab: {}\n\
         security.kerberos.login.principal: keel@{REALM}\n\
         security.kerberos.login.contexts: Client\n\
         zookeeper.sasl.disable: {off}\n\
         high-availability.zookeeper.client.acl: {}\n",
        keel_keytab.display(),
        if off { "open" } else { "creator" }
    ));
    assert_eq!(s.kerberos.is_some(), !off);

    // A session logs in from the keytab alone (no kinit, no ticket cache of the user).
    let client = s.connect().await.unwrap_or_else(|e| panic!("Kerberos connect: {e}\nKDC: {}", kdc.tail()));
    let users = client.list_auth_users().await.expect("whoami");
    assert!(
        users.iter().any(|u| u.scheme() == "sasl" && u.user().starts_with("keel")),
        "the session is not authenticated as keel: {users:?}"
    );
    let (acls, _) = client.get_acl("/").await.expect("namespace ACL");
    assert!(acls.iter().all(|a| a.scheme() == "sasl"), "creator ACL expected on the namespace: {acls:?}");
    keel_ha::session::close(client, Duration::from_secs(2)).await;

    let a = LeaderElection::start(
        s.clone(),
        Contender { id: "a".into(), rpc_address: "a:1".into(), rest_address: "a:2".into() },
    );
    let mut rx = a.subscribe();
    tokio::time::timeout(Duration::from_secs(60), async {
        while !rx.borrow_and_update().is_leading() {
            rx.changed().await.expect("election alive");
        }
    })
    .await
    .expect("a leads within 60 s");
    let fence = a.current().fence().cloned().expect("a leads");
    HaStores::ensure_layout(fence.client()).await.expect("layout");
    fence.create("/jobgraphs/probe", b"k", &fence.persistent()).await.expect("guarded create");
    a.shutdown().await;

    // A missing keytab is refused, naming the principal and the file.
    let missing = settings(&format!(
        "high-availability.zookeeper.quorum: {quorum}\n\
         security.kerberos.login.keytab: {}/nope.keytab\n\
         security.kerberos.login.principal: keel@{REALM}\n\
         security.kerberos.login.contexts: Client\n",
        kdc.dir.path().display()
    ));
    let err = missing.connect().await.expect_err("missing keytab");
    assert!(
        matches!(err, HaError::ZkKerberos { ref principal, .. } if principal == &format!("keel@{REALM}")),
        "{err:?}"
    );
}
